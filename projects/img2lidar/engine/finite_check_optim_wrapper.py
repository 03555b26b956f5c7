"""Optimizer wrappers that never take a step on a non-finite loss or gradient."""
import logging
from typing import Dict, List, Optional

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


def record_batch(files: List[str], terms: Optional[Dict[str, Tensor]] = None) -> None:
    """Record the current batch's files and loss terms for error messages (no device sync).

    Args:
        files (list[str]): The batch's input files (e.g. the lidar sweeps).
        terms (dict[str, Tensor], optional): The named loss terms of the batch.
    """
    MessageHub.get_current_instance().update_info(BATCH_INFO_KEY,
                                                  dict(files=list(files), terms=terms or {}))


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
    gradient all-reduce, and the NaN gradients it spreads make every rank refuse the same step.

    A non-finite value either raises :class:`FloatingPointError` naming the batch's files
    (``on_non_finite='error'``, the default) or skips the step (``'skip'``): the gradients are
    zeroed, no optimizer step is taken (so momentum and weight decay do not move the weights
    either), the skip is logged with the batch's files and counted in the
    ``num_non_finite_skipped`` log value.
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
        finite (see the class doc)."""
        step_kwargs = step_kwargs or {}
        zero_kwargs = zero_kwargs or {}
        loss_is_finite = bool(torch.isfinite(loss.detach()).all())
        # backward even on a non-finite loss: under DDP every rank must join the gradient
        # all-reduce of this step, or the ranks' collectives fall out of step; the NaN it
        # spreads makes every rank refuse the step below, so the replicas stay equal
        if loss_is_finite or loss.requires_grad:
            self.backward(self.scale_loss(loss))
        if not loss_is_finite:
            return self._refuse(f'non-finite loss ({loss.detach().float().mean().item()})',
                                zero_kwargs)
        if not self.should_update():
            return None
        if self.check_gradients:
            bad = self._non_finite_gradients()
            if bad:
                return self._refuse(f'non-finite gradients in {bad} parameter tensors',
                                    zero_kwargs)
        self.step(**step_kwargs)
        self.zero_grad(**zero_kwargs)
        return None

    def _non_finite_gradients(self) -> int:
        """Number of parameter tensors whose gradient holds a NaN or an infinity."""
        grads = [p.grad for group in self.optimizer.param_groups for p in group['params']
                 if p.grad is not None]
        if not grads:
            return 0
        flags = torch.stack([torch.isfinite(g).all() for g in grads])  # one sync for all
        return int((~flags).sum())

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
