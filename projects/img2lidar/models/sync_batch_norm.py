"""Synchronised BatchNorm that also runs on CPU (gloo), for the sparse students."""
import torch
import torch.distributed as dist
from mmdet3d.registry import MODELS
from torch import Tensor, nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of every process's input is the summed gradient."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


@MODELS.register_module('SyncBN1dAnyDevice')
class SyncBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over (N, C) features whose batch statistics cover every process.

    torch's ``SyncBatchNorm`` refuses CPU tensors; this one sums (count, sum, sum of squares)
    over processes with a differentiable all_reduce, so a 2-process gloo run normalises exactly
    like one process holding both batches. Outside training or without a process group it is
    plain ``BatchNorm1d``. Use :func:`convert_sync_batchnorm` on a model, or
    ``norm_cfg=dict(type='SyncBN1dAnyDevice')``.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        stats = torch.cat([xf.sum(0), (xf * xf).sum(0),
                           xf.new_tensor([float(x.shape[0])])])
        stats = _AllReduceSum.apply(stats)  # sum over processes, gradients summed back
        count = stats[-1]
        mean = stats[:c] / count
        var = (stats[c:2 * c] / count - mean * mean).clamp(min=0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(
                    self.num_batches_tracked)
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.mul_(1 - m).add_(m * mean.to(self.running_mean.dtype))
                self.running_var.mul_(1 - m).add_(m * unbiased.to(self.running_var.dtype))
        y = (xf - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.weight + self.bias
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm1d`` of ``module`` by :class:`SyncBatchNorm1d` (same state)."""
    if isinstance(module, nn.BatchNorm1d) and not isinstance(module, SyncBatchNorm1d):
        new = SyncBatchNorm1d(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child))
    return module
