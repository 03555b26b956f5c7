"""Segmentors for the downstream protocols: linear probing and zero-shot."""
from .linear_probe_segmentors import LinearProbeCylinder3D, LinearProbeMinkUNet
from .zero_shot_segmentor import ZeroShotSegmentor

__all__ = ['LinearProbeMinkUNet', 'LinearProbeCylinder3D', 'ZeroShotSegmentor']
