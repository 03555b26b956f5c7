"""Registered model parts of img2lidar."""
from .data_preprocessors import *  # noqa: F401,F403
from .students import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
