"""Loss heads of image-to-lidar distillation, registered in mmdet3d's ``MODELS``.

Every head is a :class:`DistillationLoss`: it declares the feature levels it consumes and
returns named terms from the step's :class:`DistillationFeatures` (``head.loss(features)``),
and is also callable on pooled tensors, ``head(k (M, D), q (M, D), e (M, E) = None) -> scalar``
with ``k`` the pooled 3D features, ``q`` the pooled 2D-head features and ``e`` the pooled raw
teacher features (used by the semantically tolerant loss and class-agnostic balancing).
Shared machinery: :mod:`.utils` (chunks, checkpointing, quantiles, masks) and
:mod:`.infonce_core` (the InfoNCE core of the contrastive heads).
"""
from .class_agnostic_balancing import ClassAgnosticBalancing
from .distillation_loss import DistillationLoss
from .ppkt_loss import PPKTLoss
from .relational_loss import RelationalLoss
from .semantically_tolerant_loss import SemanticallyTolerantLoss, SemanticTolerance
from .similarity_loss import SimilarityLoss
from .superpixel_infonce_loss import SuperpixelInfoNCELoss

__all__ = [
    'DistillationLoss', 'SuperpixelInfoNCELoss', 'SemanticallyTolerantLoss', 'SemanticTolerance',
    'ClassAgnosticBalancing', 'RelationalLoss', 'PPKTLoss', 'SimilarityLoss'
]
