"""Registered model parts of img2lidar."""
from .data_preprocessors import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .image_lidar_distiller import ImageLidarDistiller
from .losses import *  # noqa: F401,F403
from .segmentors import *  # noqa: F401,F403
from .students import *  # noqa: F401,F403
from .gather_features import gather_rows
from .superpixel_pooling import PooledFeatures, superpixel_pooling
from .sync_batch_norm import SyncBatchNorm1d, convert_sync_batchnorm
from .teachers import *  # noqa: F401,F403

__all__ = [
    'ImageLidarDistiller', 'PooledFeatures', 'superpixel_pooling', 'gather_rows',
    'SyncBatchNorm1d', 'convert_sync_batchnorm'
]
