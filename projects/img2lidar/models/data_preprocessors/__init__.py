"""Data preprocessors."""
from .point_voxel_data_preprocessor import PointVoxelDataPreprocessor

__all__ = ["PointVoxelDataPreprocessor"]
