"""Optimizer wrappers that never take a step on a non-finite loss or gradient."""
import logging
from typing import Dict, List, Optional, Tuple

import torch
from mmdet3d.registry import OPTIM_WRAPPERS
from mmengine.logging import MessageHub, print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from torch import Tensor

#: runtime-info key under which a model records what its current batch holds (see
#: :func:`record_batch`); the wrappers quote it when a step is refused
BATCH_INFO_KEY = 'img2lidar_batch'
#: message-hub scalar that counts the skipped steps
SKIPPED_KEY = 'train/num_non_finite_skipped'
#: the wrapper's state-dict entry that carries the skip count across a resume
SKIPPED_STATE = 'num_non_finite_skipped'


def record_batch(files: List[str], terms: Optional[Dict[str, Tensor]] = None) -> None:
    """Record the current batch's files and loss terms for error messages (no device sync).

    The terms are kept detached (no autograd graph is held past the step) and the record is
    not resumed: it lives for one step and never goes into a checkpoint.

    Args:
        files (list[str]): The batch's input files (e.g. the lidar sweeps).
        terms (dict[str, Tensor], optional): The named loss terms of the batch.
    """
    terms = {k: v.detach() for k, v in (terms or {}).items()}
    MessageHub.get_current_instance().update_info(
        BATCH_INFO_KEY, dict(files=[str(f) for f in files], terms=terms), resumed=False)


def _distributed() -> bool:
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _describe_batch() -> str:
    info = MessageHub.get_current_instance().get_info(BATCH_INFO_KEY)
    if not info:
        return 'the batch\'s files are unknown (the model does not record them)'
    terms = ', '.join(f'{k}={float(v.detach().float().mean()):.6g}'
                      for k, v in info['terms'].items())
    return f"loss terms: {terms or '-'}; batch files: {info['files']}"


class FiniteCheckMixin:
    """Checks the loss and the gradients before ``step``.

    A non-finite loss is still back-propagated: under DDP every rank must join the step's
    gradient all-reduce. Whether any rank's loss was non-finite is then decided with one small
    all-reduce, so that every rank raises, or skips, the same step together (with a loss scaler
    the other ranks would otherwise skip the step on their own and wait in the next all-reduce
    for a rank that raised).

    A non-finite value either raises :class:`FloatingPointError` naming the batch's files
    (``on_non_finite='error'``, the default) or skips the step (``'skip'``): the gradients are
    zeroed, no optimizer step is taken (so momentum and weight decay do not move the weights
    either), the skip is logged with the batch's files and counted in the
    ``num_non_finite_skipped`` log value. The count is part of the wrapper's ``state_dict``,
    so a resumed run goes on counting.
    """

    #: whether gradients are checked (an AMP loss scaler handles overflowing gradients itself)
    check_gradients = True

    def __init__(self, *args, on_non_finite: str = 'error', **kwargs) -> None:
        if on_non_finite not in ('error', 'skip'):
            raise ValueError(f"on_non_finite must be 'error' or 'skip', got {on_non_finite!r}")
        super().__init__(*args, **kwargs)
        self.on_non_finite = on_non_finite
        self.num_skipped = 0

    def update_params(self, loss: Tensor, step_kwargs: Optional[dict] = None,
                      zero_kwargs: Optional[dict] = None) -> None:
        """``backward`` and, when due, ``step`` and ``zero_grad``, unless something is not
        finite (see the class doc). One host read per step decides (plus, in a distributed run,
        one small all-reduce before it)."""
        step_kwargs = step_kwargs or {}
        zero_kwargs = zero_kwargs or {}
        bad_here = ~torch.isfinite(loss.detach()).all()
        # backward even on a non-finite loss: under DDP every rank must join the gradient
        # all-reduce of this step, or the ranks' collectives fall out of step
        if loss.requires_grad or not bool(bad_here):
            self.backward(self.scale_loss(loss))
        stepping = self.should_update()
        bad_ranks, bad_grads = self._decide(bad_here, stepping and self.check_gradients)
        if bad_ranks:
            value = loss.detach().float().mean().item()
            where = f' on rank(s) {bad_ranks}, {value} on this one' if _distributed() else \
                f' ({value})'
            return self._refuse(f'non-finite loss{where}', zero_kwargs)
        if not stepping:
            return None
        if bad_grads:
            return self._refuse(f'non-finite gradients in {bad_grads} parameter tensors',
                                zero_kwargs)
        self.step(**step_kwargs)
        self.zero_grad(**zero_kwargs)
        return None

    def _decide(self, bad_loss: Tensor, check_gradients: bool) -> Tuple[List[int], int]:
        """The ranks whose loss is not finite and the number of parameter tensors whose
        gradient is not finite, the same on every rank: one vector, all-reduced in a distributed
        run, read once."""
        import torch.distributed as dist
        world = dist.get_world_size() if _distributed() else 1
        rank = dist.get_rank() if world > 1 else 0
        flags = torch.zeros(world + 1, dtype=torch.int32, device=bad_loss.device)
        flags[rank] = bad_loss.to(torch.int32)
        if check_gradients:
            grads = [p.grad for group in self.optimizer.param_groups for p in group['params']
                     if p.grad is not None]
            if grads:
                flags[world] = torch.stack([~torch.isfinite(g).all() for g in grads]).sum()
        if world > 1:
            # each rank sets only its own loss slot; the gradient counts are alike on every
            # rank once DDP has averaged the gradients, so MAX (a sum would count W times)
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        values = flags.tolist()
        return [r for r in range(world) if values[r]], values[world]

    def state_dict(self) -> dict:
        """The wrapped optimizer's state (see mmengine's wrapper), plus the skip count."""
        state = super().state_dict()
        state[SKIPPED_STATE] = self.num_skipped
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Load what :meth:`state_dict` gave (a state without the skip count, from before it
        was saved, counts from 0)."""
        state_dict = dict(state_dict)
        self.num_skipped = int(state_dict.pop(SKIPPED_STATE, 0))
        super().load_state_dict(state_dict)

    def _refuse(self, what: str, zero_kwargs: dict) -> None:
        hub = MessageHub.get_current_instance()
        iteration = hub.get_info('iter')  # 0-based in mmengine's message hub
        where = f' at iteration {iteration + 1}' if isinstance(iteration, int) else ''
        msg = f'{what}{where}: {_describe_batch()}'
        if self.on_non_finite == 'error':
            raise FloatingPointError(msg + " (optim_wrapper.on_non_finite='skip' skips such "
                                     'steps instead)')
        self.zero_grad(**zero_kwargs)
        self.num_skipped += 1
        hub.update_scalar(SKIPPED_KEY, self.num_skipped)
        print_log(f'skipped the optimizer step ({self.num_skipped} so far): {msg}',
                  logger='current', level=logging.WARNING)
        return None


@OPTIM_WRAPPERS.register_module()
class FiniteCheckOptimWrapper(FiniteCheckMixin, OptimWrapper):
    """mmengine's ``OptimWrapper`` that refuses non-finite losses and gradients.

    Args:
        on_non_finite (str): ``'error'`` (default) or ``'skip'``; see :class:`FiniteCheckMixin`.
        **kwargs: See ``mmengine.optim.OptimWrapper``.
    """


@OPTIM_WRAPPERS.register_module()
class FiniteCheckAmpOptimWrapper(FiniteCheckMixin, AmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` that refuses non-finite losses.

    Gradients are not checked: with a dynamic loss scale, overflowing gradients are expected
    now and then, and the loss scaler itself skips those steps and lowers the scale.

    Args:
        on_non_finite (str): ``'error'`` (default) or ``'skip'``; see :class:`FiniteCheckMixin`.
        **kwargs: See ``mmengine.optim.AmpOptimWrapper``.
    """

    check_gradients = False
