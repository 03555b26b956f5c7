"""Datasets and transforms for image-to-lidar pretraining."""
from .bad_sample import BadSampleError
from .image_lidar_pretrain_dataset import ImageLidarPretrainDataset
from .transforms import *  # noqa: F401,F403

__all__ = ['BadSampleError', 'ImageLidarPretrainDataset']
