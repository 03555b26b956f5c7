"""All-gather of variable-length feature rows across processes, with gradients."""
from typing import List, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from .host_to_device import host_to_device


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllGatherRows(torch.autograd.Function):
    """Forward: gather equally padded rows of every process. Backward: each process receives
    the sum over processes of the gradients of its own rows (all_reduce, any backend)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        rank = dist.get_rank()
        return grad[rank * ctx.rows:(rank + 1) * ctx.rows]


def gather_rows(x: Tensor) -> Tensor:
    """Concatenate the rows of ``x`` of every process in rank order, differentiably.

    Args:
        x (Tensor): This process's rows, shape (M_rank, C); M_rank may differ between processes.

    Returns:
        Tensor: Shape (sum of M_rank, C). Without an initialised process group, ``x`` itself.

    Gradients: when every process computes the same loss on the gathered rows (as
    :class:`ImageLidarDistiller` does with ``gather_features=True``), each process's rows get
    world_size times that loss's gradient, and DistributedDataParallel's average over processes
    turns it into exactly the gradient of one process holding the whole global batch.
    """
    world = _world()
    if world == 1:
        return x
    sizes: List[Tensor] = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
    dist.all_gather(sizes, host_to_device([x.shape[0]], x.device, torch.long))
    sizes_ = torch.cat(sizes).tolist()  # one read of every rank's size
    pad = max(sizes_) - x.shape[0]
    padded = torch.cat([x, x.new_zeros((pad, ) + x.shape[1:])]) if pad else x
    full = _AllGatherRows.apply(padded)
    step = max(sizes_)
    return torch.cat([full[r * step:r * step + n] for r, n in enumerate(sizes_)])


def gather_counts(values: Sequence[int], device: torch.device) -> List[List[int]]:
    """The integers ``values`` of every process, in rank order, with one all-gather.

    Args:
        values (Sequence[int]): This process's integers (the same number on every process).
        device (torch.device): Where the backend communicates (CUDA for nccl).

    Returns:
        list[list[int]]: One list per rank; ``[list(values)]`` without a process group.
    """
    world = _world()
    if world == 1:
        return [list(values)]
    mine = host_to_device(list(values), device, torch.long)
    parts = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(parts, mine)
    return torch.stack(parts).tolist()  # one read


def gather_bases(values: Sequence[int],
                 device: torch.device) -> Tuple[List[int], List[int], bool]:
    """Where this process's ranges start in the global batch, with one all-gather.

    Args:
        values (Sequence[int]): Sizes of this process's index ranges (rows, points, ids...).
        device (torch.device): Where the backend communicates (CUDA for nccl).

    Returns:
        tuple: ``bases``, the sums of each value over the earlier ranks (the shift of this
        process's indices); ``totals``, the sums over every rank; and whether this process is
        the last rank. Without a process group: zeros, ``values`` and True.
    """
    counts = gather_counts(values, device)
    rank = dist.get_rank() if len(counts) > 1 else 0
    bases = [sum(c[i] for c in counts[:rank]) for i in range(len(values))]
    totals = [sum(c[i] for c in counts) for i in range(len(values))]
    return bases, totals, rank == len(counts) - 1


def sum_of_shares(share: Tensor) -> Tensor:
    """The loss of the local-anchor form from this process's share of it.

    Each process computes the share of the global loss that its own anchors carry (against
    every gathered candidate). The returned tensor's value is the sum of the shares over the
    processes, the global loss (one small all-reduce), and its gradient is world_size times the
    share's: the gather's backward sums every process's gradients back to the rows' owners, so
    DistributedDataParallel's average over processes gives exactly the gradient of the global
    loss, as when every process computed all of it (:func:`gather_rows`). Without a process
    group, the share itself.

    Args:
        share (Tensor): This process's share, a scalar.

    Returns:
        Tensor: A scalar.
    """
    world = _world()
    if world == 1:
        return share
    total = share.detach().clone()
    dist.all_reduce(total)
    return world * share + (total - world * share).detach()
