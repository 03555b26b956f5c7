"""3D students: sparse backbones that return one feature per input point."""
from .base_point_student import BasePointStudent
from .cylinder3d_student import Cylinder3DStudent
from .minkunet_student import MinkUNetStudent
from .voxel_to_point import voxel_to_point

__all__ = ["BasePointStudent", "MinkUNetStudent", "Cylinder3DStudent", "voxel_to_point"]
