"""Gathering variable-length feature rows across processes, with gradients, moving only what
is needed.

- The sizes of every process (rows of each level, index ranges) are exchanged once per step
  (:func:`exchange_counts`: one all-gather of a few integers, one host read) and handed to
  every gather, which then needs no exchange of its own (:func:`gather_rows` with ``sizes``).
- The forward is an all-gather of equally padded rows; its backward is a reduce-scatter: each
  process receives the sum over processes of the gradients of its own rows only, sending
  (W - 1) / W of the gathered gradient where the all-reduce of the whole gathered gradient
  sent twice that and kept one slice. NCCL runs its reduce-scatter. Gloo's reduce-scatter of
  CPU tensors moves what an all-reduce moves (measured on the loopback interface with torch
  2.13: 32 MiB per rank for a 32 MiB tensor on 2 processes, like ``all_reduce``), so on gloo
  the same exchange runs as ``all_to_all_single`` (each process sends every other process the
  gradient of that process's rows: 16 MiB per rank) and each process sums what it receives,
  as ``torch.distributed.nn.functional.all_gather``'s backward does off NCCL.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from .host_to_device import host_to_device


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _all_gather(out: Tensor, x: Tensor) -> None:
    """All-gather into one tensor (torch 2.13 names it ``all_gather_single``)."""
    (getattr(dist, 'all_gather_single', None) or dist.all_gather_into_tensor)(out, x)


def _reduce_scatter(grad: Tensor, world: int) -> Tensor:
    """The sum over processes of slice ``rank`` of every process's ``grad`` (world * n, ...),
    shape (n, ...) (see the module doc for gloo)."""
    if dist.get_backend() == dist.Backend.GLOO:
        received = torch.empty_like(grad)
        dist.all_to_all_single(received, grad)
        return torch.sum(received.view((world, -1) + grad.shape[1:]), dim=0)
    out = grad.new_empty((grad.shape[0] // world, ) + grad.shape[1:])
    (getattr(dist, 'reduce_scatter_single', None) or dist.reduce_scatter_tensor)(out, grad)
    return out


class _AllGatherRows(torch.autograd.Function):
    """Forward: gather equally padded rows of every process. Backward: each process receives
    the sum over processes of the gradients of its own rows (a reduce-scatter)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        world = dist.get_world_size()
        out = x.new_empty((world * x.shape[0], ) + x.shape[1:])
        _all_gather(out, x.contiguous())
        ctx.world = world
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return _reduce_scatter(grad.contiguous(), ctx.world)


@dataclass(frozen=True)
class RankCounts:
    """Integers of every process (sizes of rows and index ranges), from one exchange.

    Attributes:
        values (tuple[tuple[int, ...], ...]): One tuple per rank, in rank order, the same
            number of values each.
        rank (int): This process's rank.
    """
    values: Tuple[Tuple[int, ...], ...]
    rank: int

    @property
    def world_size(self) -> int:
        return len(self.values)

    @property
    def is_last(self) -> bool:
        return self.rank == len(self.values) - 1

    def sizes(self, i: int) -> List[int]:
        """Value ``i`` of every rank."""
        return [v[i] for v in self.values]

    def base(self, i: int) -> int:
        """The sum of value ``i`` over the earlier ranks (where this process's range starts)."""
        return sum(v[i] for v in self.values[:self.rank])

    def total(self, i: int) -> int:
        """The sum of value ``i`` over every rank."""
        return sum(v[i] for v in self.values)

    def columns(self, start: int, stop: int) -> 'RankCounts':
        """Values ``start:stop`` of every rank."""
        return RankCounts(tuple(v[start:stop] for v in self.values), self.rank)


def exchange_counts(values: Sequence[int], device: torch.device) -> RankCounts:
    """The integers ``values`` of every process, with one all-gather and one host read.

    Args:
        values (Sequence[int]): This process's integers (the same number on every process).
        device (torch.device): Where the backend communicates (CUDA for nccl).

    Returns:
        RankCounts: Every rank's values; only this process's without a process group.
    """
    world = _world()
    if world == 1:
        return RankCounts((tuple(int(v) for v in values), ), 0)
    mine = host_to_device(list(values), device, torch.long)
    every = mine.new_empty((world * mine.numel(), ))
    _all_gather(every, mine)
    return RankCounts(tuple(tuple(v) for v in every.view(world, -1).tolist()),  # one read
                      dist.get_rank())


def gather_rows(x: Tensor, sizes: Optional[Sequence[int]] = None) -> Tensor:
    """Concatenate the rows of ``x`` of every process in rank order, differentiably.

    Args:
        x (Tensor): This process's rows, shape (M_rank, ...); M_rank may differ between
            processes.
        sizes (Sequence[int], optional): M_rank of every rank, when known (from the step's
            :func:`exchange_counts`); exchanged here (one more host read) when None.

    Returns:
        Tensor: Shape (sum of M_rank, ...). Without an initialised process group, ``x`` itself.

    Gradients: when every process computes the same loss on the gathered rows (as
    :class:`ImageLidarDistiller` does with ``gather_features=True``), each process's rows get
    world_size times that loss's gradient, and DistributedDataParallel's average over processes
    turns it into exactly the gradient of one process holding the whole global batch.
    """
    world = _world()
    if world == 1:
        return x
    sizes = exchange_counts([x.shape[0]], x.device).sizes(0) if sizes is None else \
        [int(n) for n in sizes]
    if len(sizes) != world or sizes[dist.get_rank()] != x.shape[0]:
        raise ValueError(f'gather_rows: sizes {sizes} do not give this process (rank '
                         f'{dist.get_rank()} of {world}) its {x.shape[0]} rows')
    step = max(sizes)
    pad = step - x.shape[0]
    padded = torch.cat([x, x.new_zeros((pad, ) + x.shape[1:])]) if pad else x
    full = _AllGatherRows.apply(padded)
    if all(n == step for n in sizes):
        return full
    return torch.cat([full[r * step:r * step + n] for r, n in enumerate(sizes)])


def gather_fields(fields: Dict[str, Optional[Tensor]], sizes: Sequence[int]) -> Dict[str, Tensor]:
    """Gather several fields with the same rows, one collective per kind of field.

    Fields of one dtype and the same ``requires_grad`` travel together (concatenated along
    their columns), so that a backward reduce-scatter carries only the gradients of the fields
    that need them.

    Args:
        fields (dict[str, Tensor | None]): Tensors with this process's rows first, (M, ...);
            None entries are returned as None.
        sizes (Sequence[int]): M of every rank.

    Returns:
        dict[str, Tensor | None]: The gathered fields, (sum of M, ...).
    """
    groups: Dict[tuple, List[str]] = {}
    for name, t in fields.items():
        if t is not None:
            groups.setdefault((t.dtype, t.requires_grad), []).append(name)
    out: Dict[str, Optional[Tensor]] = {name: None for name in fields}
    for names in groups.values():
        parts = [fields[n] for n in names]
        flat = [p.reshape(p.shape[0], -1) for p in parts]
        gathered = gather_rows(flat[0] if len(flat) == 1 else torch.cat(flat, 1), sizes)
        widths = [f.shape[1] for f in flat]
        for name, part, piece in zip(names, parts, gathered.split(widths, 1)):
            out[name] = piece.reshape((piece.shape[0], ) + part.shape[1:])
    return out


def gather_counts(values: Sequence[int], device: torch.device) -> List[List[int]]:
    """The integers ``values`` of every process, in rank order, with one all-gather.

    Args:
        values (Sequence[int]): This process's integers (the same number on every process).
        device (torch.device): Where the backend communicates (CUDA for nccl).

    Returns:
        list[list[int]]: One list per rank; ``[list(values)]`` without a process group.
    """
    return [list(v) for v in exchange_counts(values, device).values]


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
    counts = exchange_counts(values, device)
    n = len(values)
    return ([counts.base(i) for i in range(n)], [counts.total(i) for i in range(n)],
            counts.is_last)


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


def share_rows(x: Tensor, rows: Tuple[int, int], total: int) -> Tensor:
    """Every process's rows of a tensor that needs no gradient, when each process knows where
    its own rows go among the ``total`` rows (e.g. the votes of its anchors): one all-reduce of
    the rows placed in zeros, and no exchange of sizes.

    Args:
        x (Tensor): This process's rows, (rows[1] - rows[0], ...).
        rows (tuple[int, int]): Where they go.
        total (int): Rows of every process together.

    Returns:
        Tensor: Shape (total, ...); without a process group, ``x`` itself.
    """
    if _world() == 1:
        return x
    full = x.new_zeros((total, ) + x.shape[1:])
    full[rows[0]:rows[1]] = x
    dist.all_reduce(full)
    return full
