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
"""
import io
import os
import struct
import zipfile
import zlib
from typing import Optional, Tuple

import cv2
import numpy as np

#: maps whose ids all lie in [0, AS_IS_LIMIT) are used as they are
AS_IS_LIMIT = 1 << 12
#: below this many distinct possible ids a lookup table is faster than sorting
_LUT_LIMIT = 1 << 20


def _read_npz_member(path: str, name: str = 'labels.npy') -> Optional[np.ndarray]:
    """The array ``name`` of a ``.npz`` file, inflated straight from the zip entry.

    ``np.load`` reads the same bytes through ``zipfile``, which also checksums them (CRC-32 of
    the inflated data): about half the cost of reading a 1600x900 map. Here the entry's
    compressed bytes are inflated by zlib (which rejects a damaged deflate stream) and their
    length is checked against the directory. Returns None for an entry this reader does not
    handle (not deflated, or a zip64 or encrypted entry), for ``np.load`` to read.
    """
    with open(path, 'rb') as f:
        info = zipfile.ZipFile(f).getinfo(name)
        if info.compress_type != zipfile.ZIP_DEFLATED or info.flag_bits & 0x1 or \
                info.file_size >= 0xFFFFFFFF:
            return None
        f.seek(info.header_offset)
        head = f.read(30)
        if head[:4] != b'PK\x03\x04':
            return None
        name_len, extra_len = struct.unpack('<HH', head[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        data = zlib.decompress(f.read(info.compress_size), -15, info.file_size)
    if len(data) != info.file_size:
        raise ValueError(f'{path}: {name} inflates to {len(data)} bytes, not {info.file_size}')
    buf = io.BytesIO(data)
    version = np.lib.format.read_magic(buf)
    shape, fortran, dtype = np.lib.format._read_array_header(buf, version)
    if fortran or dtype.hasobject:
        return None
    return np.frombuffer(data, dtype=dtype, offset=buf.tell()).reshape(shape)


def read_superpixels(path: str) -> np.ndarray:
    """Read an integer superpixel map, (H, W), in its stored integer type.

    Formats: ``.npz`` (compressed, key ``labels``; what tools/create_superpixels.py writes,
    about 3x faster to read than PNG), ``.npy``, or an 8/16-bit PNG.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is unreadable or not a 2D integer image.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f'superpixel map not found: {path} (run tools/create_superpixels.py)')
    if path.endswith(('.npy', '.npz')):
        try:
            sp = _read_npz_member(path) if path.endswith('.npz') else None
            if sp is None:
                sp = np.load(path)
                if path.endswith('.npz'):
                    sp = sp['labels']
        except Exception as e:  # noqa: BLE001 - name the file whatever numpy says
            raise ValueError(f'{path}: unreadable superpixel map ({e})') from e
    else:
        sp = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if sp is None:
            raise ValueError(f'{path}: unreadable superpixel map')
    if sp.ndim != 2 or not np.issubdtype(sp.dtype, np.integer):
        raise ValueError(f'{path}: a superpixel map must be a 2D integer image, got '
                         f'{sp.dtype} of shape {sp.shape}')
    return sp


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
