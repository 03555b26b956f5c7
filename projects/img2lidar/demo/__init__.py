"""The built-in demo world: a procedural driving scene in the nuScenes format."""
from .nuscenes_writer import write_world
from .world import make_world

__all__ = ['write_world', 'make_world']
