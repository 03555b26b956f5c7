"""MinkUNet's linear head trained with cross-entropy plus Lovasz-softmax (SLidR's recipe)."""
from typing import Dict

from mmdet3d.models.decode_heads import MinkUNetHead
from mmdet3d.registry import MODELS
from mmdet3d.structures.det3d_data_sample import SampleList
from mmdet3d.utils import ConfigType
from torch import Tensor


@MODELS.register_module()
class MinkUNetLovaszHead(MinkUNetHead):
    """mmdet3d's ``MinkUNetHead`` (a linear classifier per voxel) with an extra Lovasz loss.

    Args:
        loss_lovasz (dict): Config of mmdet3d's ``LovaszLoss``.
        **kwargs: See ``MinkUNetHead`` (``channels``, ``num_classes``, ``loss_decode``, ...).
    """

    def __init__(self, loss_lovasz: ConfigType = dict(type='LovaszLoss', loss_weight=1.0,
                                                      reduction='none'),
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.loss_lovasz = MODELS.build(loss_lovasz)

    def loss_by_feat(self, seg_logit: Tensor,
                     batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Cross-entropy (``loss_sem_seg``) and Lovasz (``loss_lovasz``) on voxel labels."""
        losses = super().loss_by_feat(seg_logit, batch_data_samples)
        labels = self._stack_batch_gt(batch_data_samples)
        losses['loss_lovasz'] = self.loss_lovasz(seg_logit, labels, ignore_index=self.ignore_index)
        return losses
