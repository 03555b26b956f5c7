"""Registered model parts of img2lidar."""
from .data_preprocessors import *  # noqa: F401,F403
from .distillation_features import DistillationFeatures, PairFeatures, PooledFeatures
from .gather_features import gather_bases, gather_counts, gather_rows
from .heads import *  # noqa: F401,F403
from .image_lidar_distiller import ImageLidarDistiller
from .losses import *  # noqa: F401,F403
from .pixel_features import PixelFeatures
from .point_pixel_pairs import BatchPairs, pair_features
from .segmentors import *  # noqa: F401,F403
from .students import *  # noqa: F401,F403
from .superpixel_pooling import nearest_resize_labels, superpixel_pooling
from .sync_batch_norm import SyncBatchNorm1d, convert_sync_batchnorm
from .teachers import *  # noqa: F401,F403

__all__ = [
    'ImageLidarDistiller', 'DistillationFeatures', 'PooledFeatures', 'PairFeatures',
    'BatchPairs', 'PixelFeatures', 'pair_features', 'superpixel_pooling',
    'nearest_resize_labels', 'gather_rows', 'gather_counts', 'gather_bases', 'SyncBatchNorm1d',
    'convert_sync_batchnorm'
]
