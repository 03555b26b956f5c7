"""Superpixel maps: reading one from disk and bringing its ids into a small range.

A superpixel map is any integer image whose equal values form one region. Segmenters write
very different ids: SLIC starts at 0 and is compact, SAM-style mask generators write instance
or hashed ids up to 2**40 and leave unassigned pixels. The pretraining pipeline therefore
reads every map at load into ids below a small per-image id range
(:func:`compact_superpixel_ids`):

- a map whose ids are all in ``[0, 4096)`` (SLIC's, the project's own maps) is used as it is,
  after one pass for its smallest and one for its largest id; its id range is the largest id
  plus one, and an id that no pixel carries simply pools nothing;
- any other map is relabelled to ``0..n-1`` in increasing order of its ids;

so that any integer labelling of the same partition gives the same regions, the same pooled
features and the same loss (up to the order of the rows, which no loss depends on), per-image
id ranges stay small however large the stored ids are, and ids never exceed what an int16 or a
float can hold exactly.

Negative ids are an error that names the file, unless the caller asks for them to be read as
"ignore" pixels (``-1`` in the compact map: they belong to no superpixel and pair with
nothing).

A map may be stored at 1/s of its image's resolution (``tools/create_superpixels.py
--map-scale s``; the ``.npz`` records s in its member ``scale``, and a map without one is at
full resolution): stored pixel [i, j] (row, column) holds the id of full-resolution pixel
[s i, s j], and full-resolution pixel (x, y) reads stored pixel [y // s, x // s], so the map is
(ceil(H / s), ceil(W / s)) (:func:`stored_map_shape`). A map computed at 1/s resolution
(``--downscale s``) loses nothing this way: its full-resolution form is the nearest-neighbour
upsampling that repeats each computed pixel over its s x s block. Nothing resizes a map: one
whose shape is not its image's at its recorded scale is an error naming both files.
"""
import functools
import io
import math
import os
from typing import Optional, Tuple

import cv2
import numpy as np

from ...file_integrity import DamagedFileError, read_zip_members

#: the ``.npz`` member that records the scale of a map stored below full resolution
SCALE_MEMBER = 'scale.npy'
#: maps whose ids all lie in [0, AS_IS_LIMIT) are used as they are
AS_IS_LIMIT = 1 << 12
#: below this many distinct possible ids a lookup table is faster than sorting
_LUT_LIMIT = 1 << 20


@functools.lru_cache(maxsize=256)
def _npy_header(head: bytes) -> Tuple[Tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) of a version 1.0 or 2.0 ``.npy`` header (magic,
    version, length and the dict), read with numpy's public header readers. Cached: the maps
    of a dataset share a few headers, and numpy parses each dict with ``ast.literal_eval``
    (about 50 us, twice per map). A header that does not parse raises (and is not cached).

    Raises:
        ValueError: The header is unreadable.
    """
    buf = io.BytesIO(head)
    version = np.lib.format.read_magic(buf)
    if version == (1, 0):
        header = np.lib.format.read_array_header_1_0(buf)
    elif version == (2, 0):
        header = np.lib.format.read_array_header_2_0(buf)
    else:
        raise ValueError(f'.npy version {version} is not 1.0 or 2.0')
    if buf.tell() != len(head):
        raise ValueError(f'the header ends at byte {buf.tell()}, its length says {len(head)}')
    return header


def _npy_array(data: bytes, path: str) -> np.ndarray:
    """The array of a ``.npy`` file's bytes, read with numpy's public header readers.

    Raises:
        DamagedFileError: The header is unreadable, or the data is not exactly the size the
            header gives.
    """
    if data[6:8] == b'\x03\x00':  # 3.0 (utf-8 field names): np.load reads it, checked bytes
        try:
            return np.load(io.BytesIO(data))
        except ValueError as e:
            raise DamagedFileError(f'{path}: unreadable .npy file ({e})') from e
    # magic (6 bytes), version (2), the dict's length (2 bytes in 1.0, 4 in 2.0), the dict
    width = 4 if data[6:8] == b'\x02\x00' else 2
    start = 8 + width
    end = start + int.from_bytes(data[8:start], 'little')
    try:
        shape, fortran, dtype = _npy_header(bytes(data[:end]))
    except ValueError as e:
        raise DamagedFileError(f'{path}: unreadable .npy header ({e})') from e
    if dtype.hasobject:
        raise DamagedFileError(f'{path}: the array holds Python objects, not integers')
    nbytes = math.prod(shape) * dtype.itemsize  # Python integers: exact, and 30x faster
    if len(data) - end != nbytes:
        raise DamagedFileError(
            f'{path}: {len(data) - end} bytes of array data, but the header says '
            f'{dtype} of shape {shape} ({nbytes} bytes)')
    return np.frombuffer(data, dtype=dtype, offset=end).reshape(
        shape, order='F' if fortran else 'C')


def _read_numpy_map(path: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """A ``.npz`` map's ``labels`` and ``scale`` arrays (None without one), their bytes checked
    against the zip entries' CRC-32
    (:func:`~projects.img2lidar.file_integrity.read_zip_members`), or a ``.npy`` map (no
    checksum: only its size is checked against its header) and None."""
    if path.endswith('.npz'):
        members = read_zip_members(path, ['labels.npy'], optional=[SCALE_MEMBER])
        scale = members.get(SCALE_MEMBER)
        return (_npy_array(members['labels.npy'], path),
                None if scale is None else _npy_array(scale, path))
    with open(path, 'rb') as f:
        return _npy_array(f.read(), path), None


def _scale_value(scale: Optional[np.ndarray], path: str) -> int:
    """The map's scale from its ``scale`` member (1 without one)."""
    if scale is None:
        return 1
    if scale.size != 1 or not np.issubdtype(scale.dtype, np.integer) or int(scale.flat[0]) < 1:
        raise ValueError(f'{path}: the map\'s scale must be one integer >= 1, got '
                         f'{scale.dtype} {scale.ravel()[:4].tolist()}')
    return int(scale.flat[0])


def stored_map_shape(image_hw: Tuple[int, int], scale: int) -> Tuple[int, int]:
    """The shape of a map of an (H, W) image stored at 1/``scale`` resolution:
    (ceil(H / s), ceil(W / s))."""
    h, w = image_hw
    return -(-int(h) // scale), -(-int(w) // scale)


def read_scaled_superpixels(path: str, image_hw: Optional[Tuple[int, int]] = None,
                            image_path: str = 'its image') -> Tuple[np.ndarray, int]:
    """Read an integer superpixel map as stored, with its scale (see the module doc).

    Formats: ``.npz`` (compressed, key ``labels`` and, below full resolution, ``scale``; what
    tools/create_superpixels.py writes, about 4x faster to read than PNG), ``.npy``, or an
    8/16-bit PNG (both at full resolution). Damage is an error: an ``.npz`` map is checked
    against its CRC-32s, a PNG's chunks against theirs (by libpng); a ``.npy`` map has no
    checksum, so only a size that disagrees with its header is seen.

    Args:
        path (str): The map file.
        image_hw (tuple[int, int], optional): Its image's full-resolution (H, W): the map's
            shape must be :func:`stored_map_shape` of it at the map's scale. Defaults to None
            (no check).
        image_path (str): The image, for the error message.

    Returns:
        tuple: The map (ceil(H / s), ceil(W / s)) in its stored integer type, and s.

    Raises:
        FileNotFoundError: The file does not exist.
        DamagedFileError: The file is unreadable, truncated or damaged (a ``ValueError``).
        ValueError: The file is not a 2D integer image, its scale is not an integer >= 1, or
            its shape is not its image's at its scale (naming both files).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f'superpixel map not found: {path} (run tools/create_superpixels.py)')
    scale = None
    if path.endswith(('.npy', '.npz')):
        try:
            sp, scale = _read_numpy_map(path)
        except Exception as e:  # noqa: BLE001 - name the file whatever the reader says
            detail = str(e)[len(path) + 2:] if str(e).startswith(f'{path}: ') else str(e)
            raise DamagedFileError(f'{path}: unreadable superpixel map ({detail})') from e
    else:
        # libpng checks every chunk's CRC-32 and the image stream's Adler-32: a damaged or
        # truncated PNG decodes to None (tests/test_stored_file_damage.py)
        sp = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if sp is None:
            raise DamagedFileError(f'{path}: unreadable superpixel map')
    if sp.ndim != 2 or not np.issubdtype(sp.dtype, np.integer):
        raise ValueError(f'{path}: a superpixel map must be a 2D integer image, got '
                         f'{sp.dtype} of shape {sp.shape}')
    s = _scale_value(scale, path)
    if image_hw is not None and sp.shape != stored_map_shape(image_hw, s):
        h, w = image_hw
        want_h, want_w = stored_map_shape(image_hw, s)
        at = '' if s == 1 else f' at scale {s}'
        raise ValueError(f'{path}: superpixel map is {sp.shape[1]}x{sp.shape[0]}{at} but its '
                         f'image {image_path} is {w}x{h} (its map{at} is {want_w}x{want_h})')
    return sp, s


def read_superpixels(path: str) -> np.ndarray:
    """Read an integer superpixel map as stored, (H, W) at full resolution or
    (ceil(H / s), ceil(W / s)) for a map stored at scale s (:func:`read_scaled_superpixels`
    returns s and checks the shape against the image)."""
    return read_scaled_superpixels(path)[0]


def compact_superpixel_ids(sp: np.ndarray, path: str = '<array>',
                           negative: str = 'error') -> Tuple[np.ndarray, int]:
    """Bring a superpixel map's ids into a small range (see the module doc).

    Args:
        sp (np.ndarray): Integer map, shape (H, W), any integer dtype.
        path (str): The file it came from, for error messages.
        negative (str): ``'error'`` (default): a negative id raises. ``'ignore'``: pixels with a
            negative id become ``-1`` and belong to no superpixel.

    Returns:
        tuple: the map, shape (H, W), and its id range n (every id is below n). A map whose
        ids all lie in ``[0, AS_IS_LIMIT)`` is returned as it is, with n its largest id plus
        one; any other is relabelled to ``0..n-1`` in increasing order of its ids (int32;
        negative ids -1 with ``negative='ignore'``), n being the number of its distinct ids.

    Raises:
        ValueError: On negative ids with ``negative='error'``, naming ``path`` and the count.
    """
    if negative not in ('error', 'ignore'):
        raise ValueError(f"negative must be 'error' or 'ignore', got {negative!r}")
    if sp.size == 0:
        return sp.astype(np.int32), 0
    # an unsigned map has no negative id: one pass (its largest id) is enough
    lo = 0 if np.issubdtype(sp.dtype, np.unsignedinteger) else int(sp.min())
    hi = int(sp.max())
    if lo < 0 and negative == 'error':
        count = int((sp < 0).sum())
        raise ValueError(f'{path}: {count} pixels have a negative superpixel id (smallest '
                         f'{lo}); superpixel ids must be >= 0 (or set the loader\'s '
                         "negative_superpixels='ignore' to read them as unassigned pixels)")
    if lo >= 0 and hi < AS_IS_LIMIT:  # the common case: nothing to do
        return sp, hi + 1
    valid = None if lo >= 0 else sp >= 0
    if lo >= 0 and hi < _LUT_LIMIT:
        # non-negative and small: one bincount and a lookup table, no sort
        flat = sp.ravel()
        if flat.dtype == np.uint64:  # bincount refuses uint64 even for small values
            flat = flat.astype(np.int64)
        present = np.bincount(flat, minlength=hi + 1) > 0
        n = int(present.sum())
        lut = (np.cumsum(present) - 1).astype(np.int32)
        return lut[sp], n
    ids = sp[valid] if valid is not None else sp.ravel()
    uniq, inverse = np.unique(ids, return_inverse=True)
    out = np.full(sp.shape, -1, dtype=np.int32)
    if valid is not None:
        out[valid] = inverse
    else:
        out = inverse.reshape(sp.shape).astype(np.int32)
    return out, int(uniq.shape[0])
