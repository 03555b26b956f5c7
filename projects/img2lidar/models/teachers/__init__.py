"""Frozen 2D teachers."""
from .frozen_image_teacher import FrozenImageTeacher

__all__ = ['FrozenImageTeacher']
