"""img2lidar: self-supervised image-to-lidar distillation as an MMDetection3D plugin.

Importing the package (configs do it through ``custom_imports``) applies the dependency fixes
of :mod:`projects.img2lidar.compat` and registers every module in mmdet3d's registries.
"""
from . import compat

compat.apply_all()

from . import datasets, engine, evaluation, models  # noqa: E402,F401

__version__ = '0.1.0'
