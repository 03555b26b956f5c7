"""Transforms of the image-to-lidar pretraining pipeline, in pipeline order."""
from .load_lidar_points import LoadLidarPoints
from .load_multiview_images import LoadMultiViewImagesAndSuperpixels
from .pack_image_lidar_inputs import PackImageLidarInputs
from .paired_cloud_augmentation import PairedCloudAugmentation
from .paired_random_resized_crop import PairedRandomFlip, PairedRandomResizedCrop
from .point_pixel_pairing import PointPixelPairing, project_points
from .shift_height import ShiftHeight
from .superpixel_map import compact_superpixel_ids, read_superpixels

__all__ = [
    'LoadLidarPoints', 'ShiftHeight', 'LoadMultiViewImagesAndSuperpixels', 'read_superpixels',
    'compact_superpixel_ids',
    'PointPixelPairing', 'project_points', 'PairedRandomResizedCrop', 'PairedRandomFlip',
    'PairedCloudAugmentation', 'PackImageLidarInputs'
]
