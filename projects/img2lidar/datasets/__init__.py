"""Datasets and transforms for image-to-lidar pretraining."""
from .bad_sample import BadSampleError
from .collate_image_lidar import batch_image_lidar, collate_image_lidar
from .image_lidar_pretrain_dataset import ImageLidarPretrainDataset
from .nuscenes_lidarseg_dataset import NuScenesLidarSegDataset, few_shot_scenes
from .pandaset_seg_dataset import PandaSetSegDataset
from .semantickitti_few_shot_dataset import SemanticKittiFewShotDataset
from .transforms import *  # noqa: F401,F403

__all__ = [
    'BadSampleError', 'collate_image_lidar', 'batch_image_lidar', 'ImageLidarPretrainDataset',
    'NuScenesLidarSegDataset', 'few_shot_scenes', 'PandaSetSegDataset',
    'SemanticKittiFewShotDataset'
]
