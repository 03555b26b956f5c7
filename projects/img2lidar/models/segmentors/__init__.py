"""Segmentors for the downstream protocols: linear probing."""
from .linear_probe_segmentors import LinearProbeCylinder3D, LinearProbeMinkUNet

__all__ = ['LinearProbeMinkUNet', 'LinearProbeCylinder3D']
