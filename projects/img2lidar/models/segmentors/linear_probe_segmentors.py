"""Linear probing: mmdet3d segmentors whose feature extractor is frozen and stays in eval mode."""
from typing import Sequence

from mmdet3d.models.segmentors import Cylinder3D, MinkUNet
from mmdet3d.registry import MODELS
from torch import nn


class FrozenFeaturesMixin:
    """Freeze ``frozen_modules`` at construction (no gradients, so DDP ignores them) and keep
    them in eval mode whatever ``train()`` says, so their BatchNorm statistics never move.
    Only the decode head (a linear classifier for MinkUNet's and Cylinder3D's heads) learns."""

    frozen_modules: Sequence[str] = ('backbone', )

    def _freeze(self) -> None:
        for name in self.frozen_modules:
            module: nn.Module = getattr(self, name)
            for p in module.parameters():
                p.requires_grad_(False)
            module.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self.frozen_modules:
            getattr(self, name).eval()
        return self


@MODELS.register_module()
class LinearProbeMinkUNet(FrozenFeaturesMixin, MinkUNet):
    """mmdet3d's ``MinkUNet`` with the backbone frozen: linear probing of pretrained features.

    Same arguments and checkpoint keys as ``MinkUNet``; load the pretrained backbone with
    ``backbone.init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``.
    """

    frozen_modules = ('backbone', )

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._freeze()


@MODELS.register_module()
class LinearProbeCylinder3D(FrozenFeaturesMixin, Cylinder3D):
    """mmdet3d's ``Cylinder3D`` with voxel encoder and backbone frozen (linear probing)."""

    frozen_modules = ('voxel_encoder', 'backbone')

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._freeze()
