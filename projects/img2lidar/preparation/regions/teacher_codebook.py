"""A k-means codebook of teacher features fitted once over a dataset, stored in a file."""
import json
import os
import os.path as osp
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ...file_integrity import DamagedFileError, file_sha256

#: what the assignment depends on: a codebook whose fields differ cannot be used
MUST_MATCH = ('teacher', 'checkpoint_sha256', 'input_width', 'position_weight', 'clusters')


@dataclass
class CodebookMeta:
    """How a codebook was fitted.

    Attributes:
        teacher (str): The teacher's config file.
        checkpoint_sha256 (str | None): Its weights.
        input_width (int): Width the images were resized to for the teacher.
        position_weight (float): Weight of the pixel position (x/W, y/H) next to the
            unit-norm features.
        clusters (int): Centroids.
        seed (int): k-means seed.
        iterations (int): Most Lloyd steps.
        images (int): Images the fit read.
        cells_per_image (int): Feature cells drawn from each image.
    """
    teacher: str
    checkpoint_sha256: object
    input_width: int
    position_weight: float
    clusters: int
    seed: int
    iterations: int
    images: int
    cells_per_image: int


def save_codebook(path: str, centroids: torch.Tensor, meta: CodebookMeta) -> None:
    """Write centroids (K, D) and how they were fitted to an ``.npz`` file, atomically."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp = path + '.tmp.npz'
    with open(tmp, 'wb') as f:
        np.savez(f, centroids=centroids.detach().float().cpu().numpy(),
                 meta=np.array(json.dumps(asdict(meta))))
    os.replace(tmp, path)


def load_codebook(path: str, expected: dict):
    """Read a codebook, checking that it was fitted as ``expected`` says.

    Args:
        path (str): The ``.npz`` file.
        expected (dict): Values of :data:`MUST_MATCH` fields to check.

    Returns:
        tuple: centroids, (K, D) float32 Tensor; :class:`CodebookMeta`; the file's sha256.

    Raises:
        DamagedFileError: The file is unreadable.
        ValueError: It was fitted otherwise than ``expected`` (names the fields).
    """
    try:
        with np.load(path) as data:
            centroids = torch.from_numpy(np.array(data['centroids'], dtype=np.float32))
            meta = CodebookMeta(**json.loads(str(data['meta'])))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DamagedFileError(f'{path}: unreadable teacher codebook ({e})') from e
    wrong = [f'{k}: {getattr(meta, k)!r} in the codebook, {v!r} asked' for k, v in
             expected.items() if k in MUST_MATCH and getattr(meta, k) != v]
    if wrong:
        raise ValueError(f'{path}: this codebook was fitted otherwise than asked ('
                         + '; '.join(wrong) + '): pass its values, or another codebook path '
                         'to fit a new one')
    if len(centroids) != meta.clusters:
        raise DamagedFileError(f'{path}: {len(centroids)} centroids, its metadata says '
                               f'{meta.clusters}')
    return centroids, meta, file_sha256(path)
