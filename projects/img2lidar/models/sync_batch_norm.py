"""Synchronised BatchNorm for the sparse students, on CUDA and on CPU (gloo).

On CUDA tensors it runs torch's own ``nn.SyncBatchNorm`` (fused kernels, statistics gathered
with NCCL): an ``nn.SyncBatchNorm`` that shares this module's parameters and buffers (the same
tensor objects, tied again at every call), through its public ``forward`` only. The class is a
``BatchNorm1d``, not an ``nn.SyncBatchNorm``, and the shared one is not a submodule: torch's DDP
refuses to wrap a CPU model holding an ``nn.SyncBatchNorm``, and the state dict stays
``BatchNorm1d``'s. torch's forward refuses CPU tensors; on them this module gathers each
process's count, mean and sum of squared deviations from its own mean, and merges them with
Chan's parallel formula, which stays exact when the mean is much larger than the spread
(``E[x^2] - E[x]^2`` in float32 loses everything then: at a mean of 1,000, float32 squares
carry an error of about 0.06, far above a variance of 1e-4). The gather is differentiable, so
a 2-process gloo run normalises, and back-propagates, like one process holding both batches.
"""
import torch
import torch.distributed as dist
from mmdet3d.registry import MODELS
from torch import Tensor, nn

from .gather_features import gather_rows


def merged_moments(x: Tensor) -> tuple:
    """The batch mean and (biased) variance over every process's rows, and the total count.

    Each process reduces its own rows first (two passes: its mean, then the squared
    deviations from it), and the per-process moments are merged with Chan et al.'s formula::

        mean = sum_r n_r mean_r / N,   M2 = sum_r [M2_r + n_r (mean_r - mean)^2],   var = M2 / N

    Args:
        x (Tensor): This process's rows, (N_r, C); float32 is used for the statistics.

    Returns:
        tuple[Tensor]: mean (C,), variance (C,) and N (0-d), float32, differentiable with
        respect to every process's rows.
    """
    xf = x.float()
    c = xf.shape[1]
    count = xf.new_full((1, ), float(xf.shape[0]))
    mean_r = xf.mean(0) if xf.shape[0] else xf.new_zeros(c)
    m2_r = ((xf - mean_r)**2).sum(0)
    # one row per process: no exchange of sizes (and no host read) before the gather
    stats = gather_rows(torch.cat([mean_r, m2_r, count])[None],
                        sizes=[1] * dist.get_world_size())  # (W, 2C + 1)
    counts = stats[:, -1:]
    total = counts.sum()
    mean = (counts * stats[:, :c]).sum(0) / total.clamp(min=1)
    m2 = (stats[:, c:2 * c] + counts * (stats[:, :c] - mean)**2).sum(0)
    return mean, m2 / total.clamp(min=1), total


@MODELS.register_module('SyncBN1dAnyDevice')
class SyncBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over (N, C) features whose batch statistics cover every process.

    CUDA tensors take ``nn.SyncBatchNorm``'s own path; CPU tensors in distributed training
    take :func:`merged_moments`; outside training or without a process group it is plain batch
    normalisation. The state (weight, bias, running statistics) is ``BatchNorm1d``'s, so
    checkpoints load either way. Use :func:`convert_sync_batchnorm` on a model, or
    ``norm_cfg=dict(type='SyncBN1dAnyDevice')``.
    """

    def torch_sync_batch_norm(self) -> nn.SyncBatchNorm:
        """torch's ``nn.SyncBatchNorm`` over the world, on this module's own parameters and
        buffers (the same objects: its updates of the running statistics and the gradients
        land here). It is kept out of ``_modules``, so it is neither in the state dict nor seen
        by DDP, and tied again at each call (``module.to`` or ``load_state_dict`` may have
        replaced a tensor since)."""
        sync = self.__dict__.get('_torch_sync_bn')
        if sync is None:
            sync = nn.SyncBatchNorm(self.num_features, self.eps, self.momentum, self.affine,
                                    self.track_running_stats)
            self.__dict__['_torch_sync_bn'] = sync
        sync.eps, sync.momentum, sync.training = self.eps, self.momentum, self.training
        for name in ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'):
            setattr(sync, name, getattr(self, name))
        return sync

    def forward(self, x: Tensor) -> Tensor:
        if x.is_cuda:  # torch's synchronised path (it falls back to batch norm by itself)
            return self.torch_sync_batch_norm()(x)
        distributed = self.training and dist.is_available() and dist.is_initialized() and \
            dist.get_world_size() > 1
        if not distributed:  # torch's SyncBatchNorm would refuse a CPU tensor here
            return super().forward(x)
        mean, var, count = merged_moments(x)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(
                    self.num_batches_tracked)
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.mul_(1 - m).add_(m * mean.to(self.running_mean.dtype))
                self.running_var.mul_(1 - m).add_(m * unbiased.to(self.running_var.dtype))
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            scale = scale * self.weight
        y = (x.float() - mean) * scale  # centre first: no cancellation when |mean| >> spread
        return (y + self.bias if self.affine else y).to(x.dtype)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm1d`` of ``module`` by :class:`SyncBatchNorm1d` (same state)."""
    if isinstance(module, nn.BatchNorm1d):
        new = SyncBatchNorm1d(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child))
    return module
