"""The interface every region generator implements."""
import importlib
from typing import Dict, List, Optional, Sequence

import numpy as np

#: the id of a pixel that belongs to no region
UNASSIGNED = -1


def library_versions(modules: Sequence[str]) -> Dict[str, str]:
    """The ``__version__`` of each module (``'absent'`` when it cannot be imported), and this
    project's (``img2lidar``)."""
    from ... import __version__
    found = {'img2lidar': __version__}
    for name in modules:
        try:
            found[name] = str(importlib.import_module(name).__version__)
        except ImportError:
            found[name] = 'absent'
    return found


class RegionGenerator:
    """One source of image regions: turns an RGB image into an integer region map.

    Subclasses register under their name in :data:`REGION_GENERATORS` and implement
    :meth:`generate` and :meth:`parameters`; the rest has defaults.

    Attributes:
        name (str): The registered name (the sidecar's ``generator``).
        uses_torch (bool): Runs a network: the tool calls it from one process in batches
            (:meth:`generate_batch`) instead of one process per worker.
        needs_source (bool): Reads a file per image (precomputed maps): :meth:`generate` needs
            the ``source`` record of the image.
        may_leave_unassigned (bool): Its maps can hold :data:`UNASSIGNED` pixels.
        packages (tuple[str]): Modules whose versions its spec records.
    """

    name = ''
    uses_torch = False
    needs_source = False
    may_leave_unassigned = False
    packages = ('numpy', 'cv2')

    def generate(self, image: np.ndarray, source: Optional[dict] = None) -> np.ndarray:
        """The region map of one image.

        Args:
            image (np.ndarray): RGB image, (H, W, 3) uint8.
            source (dict, optional): Where the image comes from (``cam``, ``stem``, ``name``,
                ``img_path``, ``token``, ``sample_data_token``); read by generators that look
                a stored map up.

        Returns:
            np.ndarray: Region ids, (H, W) int32; :data:`UNASSIGNED` (-1) for pixels that
            belong to no region.
        """
        raise NotImplementedError

    def generate_batch(self, images: Sequence[np.ndarray],
                       sources: Optional[Sequence[Optional[dict]]] = None) -> List[np.ndarray]:
        """The region maps of several images (one :meth:`generate` each unless overridden)."""
        sources = [None] * len(images) if sources is None else sources
        return [self.generate(img, src) for img, src in zip(images, sources)]

    def prepare(self, image_paths: Sequence[str]) -> None:
        """Anything to do once over the dataset before the maps (a shared codebook's fit);
        nothing by default."""

    def parameters(self) -> dict:
        """dict: What determines the maps, JSON-serialisable (no local paths)."""
        raise NotImplementedError

    def checkpoint_sha256(self) -> Optional[str]:
        """str | None: The SHA-256 of the weights it runs, None without any."""
        return None

    def spec(self) -> dict:
        """What made the maps: ``name``, ``parameters``, ``checkpoint_sha256``, ``versions``
        (library versions) and ``unassigned`` (whether maps can hold -1)."""
        return dict(name=self.name, parameters=self.parameters(),
                    checkpoint_sha256=self.checkpoint_sha256(),
                    versions=library_versions(self.packages),
                    unassigned=self.may_leave_unassigned)
