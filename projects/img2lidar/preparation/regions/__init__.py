"""Region sources behind one interface (:class:`RegionGenerator`, registry
:data:`REGION_GENERATORS`): SLIC (``'slic'``), SAM-family mask generators through transformers
(``'sam'``), k-means on a frozen teacher's features (``'teacher_kmeans'``) and maps someone
else computed (``'precomputed'``). ``tools/create_superpixels.py --generator NAME`` runs any of
them; ``tools/check_superpixels.py`` summarises a folder of maps."""
from .base import UNASSIGNED, RegionGenerator, library_versions
from .mask_generation import MaskGenerationRegions
from .precomputed import PrecomputedRegions
from .registry import REGION_GENERATORS, build_region_generator
from .sidecar import (SIDECAR, SuperpixelSourceError, check_superpixel_source, read_sidecar,
                      write_sidecar)
from .slic import SlicRegions
from .teacher_features import TeacherFeatureRegions

__all__ = [
    'UNASSIGNED', 'RegionGenerator', 'library_versions', 'MaskGenerationRegions',
    'PrecomputedRegions', 'REGION_GENERATORS', 'build_region_generator', 'SIDECAR',
    'SuperpixelSourceError', 'check_superpixel_source', 'read_sidecar', 'write_sidecar',
    'SlicRegions', 'TeacherFeatureRegions'
]
