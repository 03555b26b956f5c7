"""Trainable heads."""
from .image_projection_head import ImageProjectionHead
from .minkunet_lovasz_head import MinkUNetLovaszHead

__all__ = ["ImageProjectionHead", "MinkUNetLovaszHead"]
