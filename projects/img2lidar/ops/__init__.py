"""Kernels in plain torch that the dependency stack lacks on CPU (each with a reference test)."""
from .dynamic_scatter import dynamic_point_to_voxel_backward, dynamic_point_to_voxel_forward
from .sparse_conv import native_sparse_conv

__all__ = ['native_sparse_conv', 'dynamic_point_to_voxel_forward',
           'dynamic_point_to_voxel_backward']
