"""Integrity of the files the project stores: damage is an error that names the file.

Two mechanisms, by format:

- **zip files** (``.npz`` superpixel maps, ``torch.save`` checkpoints): every member carries the
  CRC-32 of its uncompressed bytes. :func:`read_zip_member` returns one member's bytes
  (:func:`read_zip_members` several) and :func:`check_zip_file` streams every member, each
  checked against its CRC. The central
  directory is authoritative (it is what ``zipfile``, ``np.load`` and torch's reader use); a
  member's local header, and its data descriptor when it has one, must agree with it on the
  name, flags, compression method, CRC-32 and sizes wherever they state them; a deflated
  member's stream must end exactly at its compressed size. :func:`check_zip_file` also checks
  the directory's own fields that ``zipfile`` reads leniently but torch's reader (miniz)
  interprets (end records, entry lengths, disks, the directory attribute): with those left
  unchecked, 3 of 24,000 single-bit flips of a small checkpoint still loaded different tensors.
- **checksum sidecars** (info pickles): :func:`write_checksum` writes ``<file>.sha256`` in the
  format of ``sha256sum`` (``cd <folder> && sha256sum -c <file>.sha256`` checks it too), and
  :func:`check_checksum` compares it with the file. A file without a sidecar is not checked.

Formats without any redundancy (raw ``.bin`` points and labels, ``.npy``) cannot be checked
here; their readers check what their size can tell.
"""
import hashlib
import io
import os
import os.path as osp
import struct
import zipfile
from typing import BinaryIO, Dict, Iterator, List, Optional, Sequence, Tuple

# zlib-ng's drop-in zlib: the same streams and CRC-32, inflated and checksummed faster than the
# standard library's zlib 1.2 (the `maps` part of `python tools/benchmark.py pipeline`)
from zlib_ng import zlib_ng as zlib

#: the local file header: signature, versions, flags, method, time, date, CRC-32, sizes,
#: name and extra lengths
_LOCAL = struct.Struct('<4sHHHHHIIIHH')
_LOCAL_SIGNATURE = b'PK\x03\x04'
#: a central directory entry: signature, versions (2), flags, method, time, date, CRC-32,
#: sizes, name, extra and comment lengths, disk, internal and external attributes, offset
_CENTRAL = struct.Struct('<4s4H2H3I5HII')
_CENTRAL_SIGNATURE = b'PK\x01\x02'
#: the end of central directory record: signature, disk, directory's disk, entries on this
#: disk and in all, directory size and offset, comment length
_END = struct.Struct('<4s4H2IH')
_END_SIGNATURE = b'PK\x05\x06'
#: the zip64 end record (signature, its size, versions, disks, counts, directory size and
#: offset) and its locator (signature, the record's disk and offset, number of disks)
_END64 = struct.Struct('<4sQ2H2I4Q')
_END64_SIGNATURE = b'PK\x06\x06'
_LOCATOR64 = struct.Struct('<4sIQI')
_LOCATOR64_SIGNATURE = b'PK\x06\x07'
_DESCRIPTOR_SIGNATURE = b'PK\x07\x08'
_ZIP64_EXTRA = 0x0001
#: general purpose flag bits: sizes and CRC in a data descriptor after the data; encryption,
#: patched data, strong encryption and masked headers, which no reader here supports
_DESCRIPTOR, _UNSUPPORTED = 0x8, 0x1 | 0x20 | 0x40 | 0x2000
#: how torch's legacy (pre-1.6, pickle) checkpoints start: protocol 2, then its magic number
_TORCH_LEGACY = b'\x80\x02\x8a\x0a'
#: the suffix of a checksum sidecar
CHECKSUM_SUFFIX = '.sha256'
_CHUNK = 1 << 22


class DamagedFileError(ValueError):
    """A stored file is damaged (truncated, or its bytes do not match their checksum)."""


def _zip64_sizes(extra: bytes, usize: int, csize: int) -> Tuple[int, int, bool]:
    """The sizes of a local header whose 32-bit fields are 0xFFFFFFFF, from its zip64 extra
    field (which holds the uncompressed size, then the compressed size, for those fields)."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from('<HH', extra, pos)
        body = extra[pos + 4:pos + 4 + size]
        if tag == _ZIP64_EXTRA:
            values = list(struct.unpack(f'<{len(body) // 8}Q', body[:len(body) // 8 * 8]))
            if usize == 0xFFFFFFFF and values:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
            return usize, csize, True
        pos += 4 + size
    return usize, csize, False


def _member_offset(f: BinaryIO, info: zipfile.ZipInfo, path: str) -> int:
    """Check a member's local header (and data descriptor) against the central directory;
    return the offset of its data.

    Raises:
        DamagedFileError: A header is missing or disagrees with the central directory.
    """
    where = f'{path}: zip member {info.filename!r}'
    f.seek(info.header_offset)
    head = f.read(_LOCAL.size)
    if len(head) < _LOCAL.size or head[:4] != _LOCAL_SIGNATURE:
        raise DamagedFileError(f'{where}: no local header at offset {info.header_offset}')
    _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len = _LOCAL.unpack(head)
    name = f.read(name_len)
    extra = f.read(extra_len)
    if len(name) + len(extra) < name_len + extra_len:
        raise DamagedFileError(f'{where}: the file ends inside its local header')
    local_name = name.decode('utf-8' if flags & 0x800 else 'cp437', errors='replace')
    if local_name != info.orig_filename:
        raise DamagedFileError(f'{where}: its local header names it {local_name!r}')
    if method != info.compress_type:
        raise DamagedFileError(f'{where}: compression method {method} in its local header, '
                               f'{info.compress_type} in the central directory')
    if flags != info.flag_bits:
        raise DamagedFileError(f'{where}: flags {flags:#x} in its local header, '
                               f'{info.flag_bits:#x} in the central directory')
    usize, csize, zip64 = _zip64_sizes(extra, usize, csize)
    offset = info.header_offset + _LOCAL.size + name_len + extra_len
    if flags & _DESCRIPTOR:  # CRC and sizes follow the data
        f.seek(offset + info.compress_size)
        tail = f.read(4 + 4 + 16)
        if tail[:4] == _DESCRIPTOR_SIGNATURE:
            tail = tail[4:]
        width = 8 if zip64 or max(info.file_size, info.compress_size) >= 0xFFFFFFFF else 4
        if len(tail) < 4 + 2 * width:
            raise DamagedFileError(f'{where}: the file ends before its data descriptor')
        crc, csize, usize = struct.unpack_from('<I' + ('Q' if width == 8 else 'I') * 2, tail)
        stated = 'data descriptor'
    else:
        stated = 'local header'
    if (crc, csize, usize) != (info.CRC, info.compress_size, info.file_size):
        raise DamagedFileError(
            f'{where}: its {stated} states CRC-32 {crc:#010x}, {csize} compressed and {usize} '
            f'bytes, the central directory {info.CRC:#010x}, {info.compress_size} and '
            f'{info.file_size}')
    return offset


def _chunks(f: BinaryIO, offset: int, size: int, where: str) -> Iterator[bytes]:
    """``size`` bytes of ``f`` from ``offset``, in chunks; a short file is an error."""
    f.seek(offset)
    left = size
    while left:
        chunk = f.read(min(left, _CHUNK))
        if not chunk:
            raise DamagedFileError(f'{where}: the file ends {left} bytes before the end of '
                                   'its data (truncated)')
        left -= len(chunk)
        yield chunk


def _open_zip(f: BinaryIO, path: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(f)
    except Exception as e:  # noqa: BLE001 - any failure to parse the directory is damage
        raise DamagedFileError(f'{path}: not a readable zip file ({type(e).__name__}: {e}); '
                               'truncated or damaged') from e


def _read_checked(f: BinaryIO, zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str,
                  sink: Optional[list]) -> None:
    """Read one member, check it against its CRC-32; append its bytes to ``sink`` if given."""
    try:
        _read_member(f, zf, info, path, sink)
    except DamagedFileError:
        raise
    except (OSError, ValueError, OverflowError, struct.error) as e:  # e.g. a negative offset
        raise DamagedFileError(f'{path}: zip member {info.filename!r}: unreadable '
                               f'({type(e).__name__}: {e}); truncated or damaged') from e


def _read_member(f: BinaryIO, zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str,
                 sink: Optional[list]) -> None:
    """:func:`_read_checked` without the conversion of unexpected errors."""
    where = f'{path}: zip member {info.filename!r}'
    if info.flag_bits & _UNSUPPORTED:
        raise DamagedFileError(f'{where}: flags {info.flag_bits:#x} ask for encryption or '
                               'patched data, which this reader does not read')
    offset = _member_offset(f, info, path)
    crc, size = 0, 0
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size != info.file_size:
            raise DamagedFileError(f'{where}: stored, but {info.compress_size} bytes hold '
                                   f'{info.file_size}')
        for chunk in _chunks(f, offset, info.compress_size, where):
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
            if sink is not None:
                sink.append(chunk)
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        inflate = zlib.decompressobj(-15)
        try:
            for chunk in _chunks(f, offset, info.compress_size, where):
                out = inflate.decompress(chunk)
                crc, size = zlib.crc32(out, crc), size + len(out)
                if sink is not None:
                    sink.append(out)
        except zlib.error as e:
            raise DamagedFileError(f'{where}: damaged deflate stream ({e})') from e
        if not inflate.eof or inflate.unused_data:
            raise DamagedFileError(f'{where}: the deflate stream does not end at the entry\'s '
                                   f'compressed size ({info.compress_size} bytes)')
    else:  # another method (bzip2, lzma): zipfile reads it and checks its CRC at the end
        try:
            data = zf.read(info)
        except Exception as e:  # noqa: BLE001 - whatever zipfile says, name the file
            raise DamagedFileError(f'{where}: unreadable ({type(e).__name__}: {e})') from e
        crc, size = zlib.crc32(data), len(data)
        if sink is not None:
            sink.append(data)
    if size != info.file_size:
        raise DamagedFileError(f'{where}: holds {size} bytes, the directory says '
                               f'{info.file_size}')
    if crc != info.CRC:
        raise DamagedFileError(f'{where}: CRC-32 {crc:#010x} of its bytes, {info.CRC:#010x} '
                               'recorded (damaged)')


def _directory_records(f: BinaryIO, path: str) -> Tuple[int, int, int]:
    """The central directory's offset, size and entry count from the end records, which must
    agree with each other and state one disk.

    Raises:
        DamagedFileError: An end record is missing or inconsistent.
    """
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - _END.size - 0xFFFF))
    tail = f.read()
    pos = tail.rfind(_END_SIGNATURE)
    while pos >= 0 and pos + _END.size + _END.unpack_from(tail, pos)[-1] != len(tail):
        pos = tail.rfind(_END_SIGNATURE, 0, pos)
    if pos < 0:
        raise DamagedFileError(f'{path}: no end of central directory record')
    _, disk, cd_disk, on_disk, count, cd_size, cd_offset, _ = _END.unpack_from(tail, pos)
    stated = [(disk, cd_disk), (on_disk, count), cd_size, cd_offset]
    end = size - len(tail) + pos
    loc = tail[pos - _LOCATOR64.size:pos] if pos >= _LOCATOR64.size else b''
    if loc[:4] == _LOCATOR64_SIGNATURE:
        _, rec_disk, rec_offset, disks = _LOCATOR64.unpack(loc)
        f.seek(rec_offset)
        rec = f.read(_END64.size)
        if len(rec) < _END64.size or rec[:4] != _END64_SIGNATURE or rec_disk or disks != 1 \
                or rec_offset + _END64.size + _LOCATOR64.size != end:
            raise DamagedFileError(f'{path}: damaged zip64 end of central directory records')
        (_, rec_size, _, _, disk64, cd_disk64, on_disk64, count64, cd_size64,
         cd_offset64) = _END64.unpack(rec)
        full = [(disk64, cd_disk64), (on_disk64, count64), cd_size64, cd_offset64]
        markers = [(0xFFFF, 0xFFFF), (0xFFFF, 0xFFFF), 0xFFFFFFFF, 0xFFFFFFFF]
        if rec_size != _END64.size - 12 or any(
                s not in (f64, m) for s, f64, m in zip(stated, full, markers)):
            raise DamagedFileError(f'{path}: the zip64 end record ({full}) disagrees with the '
                                   f'end record ({stated})')
        stated, end = full, rec_offset
    (disk, cd_disk), (on_disk, count), cd_size, cd_offset = stated
    if disk or cd_disk or on_disk != count or cd_offset + cd_size != end:
        raise DamagedFileError(
            f'{path}: the end of central directory record is inconsistent (disks {disk}, '
            f'{cd_disk}; {on_disk} and {count} entries; directory of {cd_size} bytes at '
            f'{cd_offset}, ending at {end})')
    return cd_offset, cd_size, count


def _check_directory(f: BinaryIO, members: List[zipfile.ZipInfo], path: str) -> None:
    """Check the central directory field by field where ``zipfile`` is lenient and other
    readers (torch's miniz) are not: the end records agree, the entries exactly fill the
    directory with the lengths they state, every entry starts on disk 0 and is a directory
    exactly when its name ends with '/'.

    Raises:
        DamagedFileError: Naming the file and the field.
    """
    cd_offset, cd_size, count = _directory_records(f, path)
    if count != len(members):
        raise DamagedFileError(f'{path}: the end record counts {count} entries, the directory '
                               f'lists {len(members)}')
    f.seek(cd_offset)
    directory = f.read(cd_size)
    pos = 0
    for info in members:
        if directory[pos:pos + 4] != _CENTRAL_SIGNATURE or pos + _CENTRAL.size > cd_size:
            raise DamagedFileError(f'{path}: no central directory entry at offset '
                                   f'{cd_offset + pos}')
        fields = _CENTRAL.unpack_from(directory, pos)
        name_len, extra_len, comment_len, disk, _, external = fields[10:16]
        name = directory[pos + _CENTRAL.size:pos + _CENTRAL.size + name_len]
        if disk or bool(external & 0x10) != name.endswith(b'/'):
            raise DamagedFileError(f'{path}: central directory entry {info.filename!r}: disk '
                                   f'{disk}, attributes {external:#x}')
        pos += _CENTRAL.size + name_len + extra_len + comment_len
    if pos != cd_size:
        raise DamagedFileError(f'{path}: the central directory entries fill {pos} bytes, the '
                               f'end record says {cd_size}')


def read_zip_member(path: str, name: str) -> bytes:
    """The uncompressed bytes of one member of a zip file, checked against its CRC-32.

    Stored and deflated members are read here in one pass of zlib (inflate, then CRC-32),
    without ``zipfile``'s stream objects; others through ``zipfile``. The directory is read as
    ``zipfile`` reads it (the member's bytes are checked whatever its lenient fields say).

    Args:
        path (str): The zip file.
        name (str): The member's name.

    Returns:
        bytes: The member's bytes.

    Raises:
        DamagedFileError: The file is not a readable zip file, has no member ``name``, or the
            member is truncated, inconsistent or does not match its CRC-32 (the message names
            the file and what is wrong).
    """
    with open(path, 'rb') as f:
        zf = _open_zip(f, path)
        try:
            info = zf.getinfo(name)
        except KeyError as e:
            raise DamagedFileError(f'{path}: no member {name!r} (members: '
                                   f'{zf.namelist()})') from e
        sink: list = []
        _read_checked(f, zf, info, path, sink)
    return sink[0] if len(sink) == 1 else b''.join(sink)


def read_zip_members(path: str, names: Sequence[str],
                     optional: Sequence[str] = ()) -> Dict[str, bytes]:
    """The uncompressed bytes of several members of one zip file, each checked against its
    CRC-32 as :func:`read_zip_member` checks one, reading the directory once.

    Args:
        path (str): The zip file.
        names (Sequence[str]): Members that must be there.
        optional (Sequence[str]): Members read when they are there. Defaults to ().

    Returns:
        dict: Member name -> bytes, for ``names`` and the ``optional`` members present.

    Raises:
        DamagedFileError: As :func:`read_zip_member`, for any member read.
    """
    out: Dict[str, bytes] = {}
    with open(path, 'rb') as file:
        # a small file (a superpixel map) is read whole and parsed from memory: its many small
        # seeks and reads then cost no system calls
        f = io.BytesIO(file.read()) if os.fstat(file.fileno()).st_size <= _CHUNK else file
        zf = _open_zip(f, path)
        present = set(zf.namelist())
        for name in list(names) + [n for n in optional if n in present]:
            if name not in present:
                raise DamagedFileError(f'{path}: no member {name!r} (members: '
                                       f'{zf.namelist()})')
            sink: list = []
            _read_checked(f, zf, zf.getinfo(name), path, sink)
            out[name] = sink[0] if len(sink) == 1 else b''.join(sink)
    return out


def check_zip_file(path: str) -> int:
    """Check every member of a zip file against its CRC-32, streaming (constant memory), and
    its directory field by field (what :func:`read_zip_member` leaves to ``zipfile``'s lenient
    reading, but another reader may interpret).

    Args:
        path (str): The zip file.

    Returns:
        int: The number of members checked.

    Raises:
        DamagedFileError: As :func:`read_zip_member`, for any member.
    """
    with open(path, 'rb') as f:
        zf = _open_zip(f, path)
        members = zf.infolist()
        try:
            _check_directory(f, members, path)
        except (OSError, ValueError, struct.error) as e:
            if isinstance(e, DamagedFileError):
                raise
            raise DamagedFileError(f'{path}: unreadable central directory ({e})') from e
        for info in members:
            _read_checked(f, zf, info, path, None)
    return len(members)


def check_checkpoint_file(path: str) -> bool:
    """Check a ``torch.save`` checkpoint before ``torch.load`` reads it.

    ``torch.load`` checks no CRC (torch 2.13: a third of all single-bit flips of a 3 KB
    checkpoint loaded different values without a word, and 579 of 600 flips spread over a
    65 KB one) and its errors on a truncated file do not name it. A checkpoint in torch's zip
    format (the default since torch 1.6; what tools/convert_teacher_checkpoint.py writes) is
    checked member by member against the CRC-32s ``torch.save`` records
    (:func:`check_zip_file`); the legacy pickle format (recognised by its first bytes) has no
    checksum and is left to ``torch.load``; any other file is reported as an unreadable zip
    file.

    Args:
        path (str): The checkpoint file.

    Returns:
        bool: True when the file was checked, False for the legacy format.

    Raises:
        FileNotFoundError: The file does not exist.
        DamagedFileError: It is truncated or damaged (naming it and the member).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    with open(path, 'rb') as f:
        if f.read(len(_TORCH_LEGACY)) == _TORCH_LEGACY:
            return False
    check_zip_file(path)
    return True


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_path(path: str) -> str:
    """The checksum sidecar of ``path``: ``<path>.sha256``."""
    return path + CHECKSUM_SUFFIX


def write_checksum(path: str) -> str:
    """Write ``path``'s checksum sidecar (``sha256sum`` format), atomically.

    Returns:
        str: The sidecar's path.
    """
    side = checksum_path(path)
    tmp = side + '.tmp'
    with open(tmp, 'w') as f:
        f.write(f'{file_sha256(path)}  {osp.basename(path)}\n')
    os.replace(tmp, side)
    return side


def remove_checksum(path: str) -> None:
    """Remove ``path``'s checksum sidecar, if any (before rewriting ``path``: a run killed
    between the two writes then leaves an unchecked file, not a false alarm)."""
    side = checksum_path(path)
    if osp.lexists(side):
        os.remove(side)


def check_checksum(path: str) -> bool:
    """Compare a file with its checksum sidecar.

    Returns:
        bool: True when the sidecar exists and matches, False when there is none.

    Raises:
        DamagedFileError: The sidecar is unreadable or does not match (naming both files).
    """
    side = checksum_path(path)
    if not osp.isfile(side):
        return False
    with open(side, 'rb') as f:
        fields = f.read(1024).split()
    try:
        expected = fields[0].decode('ascii').lower()
        int(expected, 16)
        if len(expected) != 64:
            raise ValueError(expected)
    except (IndexError, UnicodeDecodeError, ValueError) as e:
        raise DamagedFileError(f'{side}: not a SHA-256 checksum file (the checksum of '
                               f'{path}); damaged') from e
    actual = file_sha256(path)
    if actual != expected:
        raise DamagedFileError(
            f'{path}: SHA-256 {actual[:16]}... does not match {expected[:16]}... recorded in '
            f'{side}: the file is damaged (or was changed without its checksum: write it again '
            'with the tool that made it, or delete the .sha256 file if the change was meant)')
    return True
