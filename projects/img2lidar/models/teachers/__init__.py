"""Frozen 2D teachers; each normalises its input with its own statistics."""
from .clip_image_teacher import CLIPImageTeacher
from .dilated_mobilenet_v2 import DilatedMobileNetV2
from .frozen_image_teacher import FrozenImageTeacher
from .image_normalization import CLIP_MEAN_STD, IMAGENET_MEAN_STD, ImageNormalization
from .vit_teacher import ViTTeacher

__all__ = ['FrozenImageTeacher', 'CLIPImageTeacher', 'ViTTeacher', 'DilatedMobileNetV2',
           'ImageNormalization', 'IMAGENET_MEAN_STD', 'CLIP_MEAN_STD']
