"""Loss heads of image-to-lidar distillation, registered in mmdet3d's ``MODELS``.

Common interface: ``forward(k (M, D), q (M, D), e (M, E) = None) -> scalar`` with ``k`` the
pooled 3D features, ``q`` the pooled 2D-head features and ``e`` the pooled raw teacher features
(used by the semantically tolerant loss and class-agnostic balancing).
"""
from .class_agnostic_balancing import ClassAgnosticBalancing
from .ppkt_loss import PPKTLoss
from .relational_loss import RelationalLoss
from .semantically_tolerant_loss import SemanticallyTolerantLoss
from .similarity_loss import SimilarityLoss
from .superpixel_infonce_loss import SuperpixelInfoNCELoss

__all__ = [
    'SuperpixelInfoNCELoss', 'SemanticallyTolerantLoss', 'ClassAgnosticBalancing',
    'RelationalLoss', 'PPKTLoss', 'SimilarityLoss'
]
