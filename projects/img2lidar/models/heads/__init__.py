"""Trainable heads."""
from .image_projection_head import ImageProjectionHead

__all__ = ['ImageProjectionHead']
