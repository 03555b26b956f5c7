"""Frozen 2D teachers."""
from .clip_image_teacher import CLIP_IMG_NORM, CLIPImageTeacher
from .frozen_image_teacher import FrozenImageTeacher

__all__ = ['FrozenImageTeacher', 'CLIPImageTeacher', 'CLIP_IMG_NORM']
