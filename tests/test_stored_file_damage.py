"""Damage to a stored file is an error that names it, or leaves what is read identical.

Every single-bit flip and every truncation of: a superpixel map (``.npz``, stored or deflated,
and PNG), a teacher checkpoint (``torch.save``'s zip format), an info file with its checksum
sidecar. Formats without a checksum get what their size can tell: truncation of ``.npy`` maps,
of info files without a sidecar, and of point files to a size that is not a whole number of
points. What none of these can tell (a flipped bit in a ``.npy`` map, a raw ``.bin`` file or a
sidecar-less pickle, a point file cut at a point boundary) is listed in
:mod:`projects.img2lidar.file_integrity` and the readers' docs.
"""
import hashlib
import pickle
import zipfile
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np
import pytest
import torch
from mmdet3d.registry import DATASETS, MODELS
from mmengine.config import Config

from conftest import REPO_ROOT, sample_info_file
from projects.img2lidar.datasets.info_file_io import load_info_file, write_info_file
from projects.img2lidar.datasets.transforms import LoadLidarPoints, read_superpixels
from projects.img2lidar.file_integrity import (DamagedFileError, check_checkpoint_file,
                                               check_zip_file)


def _superpixel_map(h: int = 48, w: int = 80, n: int = 40, seed: int = 0) -> np.ndarray:
    """A SLIC-like partition: each pixel labelled with its nearest of ``n`` random centres."""
    centres = np.random.default_rng(seed).uniform((0, 0), (h, w), (n, 2))
    yy, xx = np.mgrid[:h, :w]
    dist = (yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2
    return dist.argmin(-1).astype(np.uint8)


def _flipped(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _outcomes(path: Path, variants: Iterable[bytes], read: Callable[[str], object],
              same: Callable[[object], bool]) -> Counter:
    """Write each variant to ``path`` and read it: a DamagedFileError naming ``path`` counts as
    'error', a result equal to the original as 'identical'; anything else fails the test."""
    counts = Counter()
    for i, variant in enumerate(variants):
        path.write_bytes(variant)
        try:
            got = read(str(path))
        except DamagedFileError as e:
            assert str(path) in str(e), e
            counts['error'] += 1
            continue
        assert same(got), f'variant {i} read silently different'
        counts['identical'] += 1
    return counts


def _every_truncation(data: bytes) -> Iterable[bytes]:
    return (data[:n] for n in range(len(data)))


def _same_map(labels: np.ndarray) -> Callable[[np.ndarray], bool]:
    return lambda got: got.dtype == labels.dtype and np.array_equal(got, labels)


# -- superpixel maps ------------------------------------------------------------------------
@pytest.mark.parametrize('save', [np.savez_compressed, np.savez], ids=['deflated', 'stored'])
def test_every_bit_flip_of_an_npz_map_is_named_or_harmless(tmp_path, save):
    """Every bit of the file: local header, zip64 extra, deflate stream (or stored bytes),
    central directory, end record. Before the CRC check, 44% of the flips of a 450x800 map
    read as a different map without a word."""
    labels = _superpixel_map()
    path = tmp_path / 'map.npz'
    save(path, labels=labels)
    data = path.read_bytes()
    assert np.array_equal(read_superpixels(str(path)), labels)
    bits = range(len(data) * 8) if save is np.savez_compressed else range(0, len(data) * 8, 5)
    counts = _outcomes(path, (_flipped(data, b) for b in bits), read_superpixels,
                       _same_map(labels))
    # the harmless flips: time stamps, versions, unused flag bits, equivalent deflate codes
    assert counts['error'] > 0.85 * len(bits), counts


def test_every_truncation_of_an_npz_map_is_named(tmp_path):
    labels = _superpixel_map()
    path = tmp_path / 'map.npz'
    np.savez_compressed(path, labels=labels)
    data = path.read_bytes()
    counts = _outcomes(path, _every_truncation(data), read_superpixels, _same_map(labels))
    assert counts == Counter(error=len(data))


def test_a_map_whose_headers_disagree_is_named(tmp_path):
    """The central directory is authoritative; a local header stating another CRC is damage
    even when the data matches the central one (np.load would read it)."""
    labels = _superpixel_map()
    path = tmp_path / 'map.npz'
    np.savez_compressed(path, labels=labels)
    data = bytearray(path.read_bytes())
    assert data[:4] == b'PK\x03\x04'
    data[14:18] = bytes(4)  # the local header's CRC-32
    path.write_bytes(bytes(data))
    assert np.array_equal(np.load(path)['labels'], labels)
    with pytest.raises(DamagedFileError, match=r'map\.npz: unreadable superpixel map \(zip '
                       r"member 'labels\.npy': its local header states CRC-32 0x00000000"):
        read_superpixels(str(path))


def test_every_bit_flip_and_truncation_of_a_png_map_is_named_or_harmless(tmp_path):
    """libpng (through cv2) checks every chunk's CRC-32 and the image stream's Adler-32."""
    labels = _superpixel_map(24, 40, 12)
    path = tmp_path / 'map.png'
    assert cv2.imwrite(str(path), labels)
    data = path.read_bytes()
    assert np.array_equal(read_superpixels(str(path)), labels)
    bits = range(0, len(data) * 8, 2)
    counts = _outcomes(path, (_flipped(data, b) for b in bits), read_superpixels,
                       _same_map(labels))
    assert counts == Counter(error=len(bits))
    counts = _outcomes(path, _every_truncation(data), read_superpixels, _same_map(labels))
    assert counts == Counter(error=len(data))


def test_every_truncation_of_an_npy_map_is_named(tmp_path):
    """.npy has no checksum: a flipped data bit cannot be seen, a size that disagrees with the
    header can."""
    labels = _superpixel_map().astype(np.uint16)
    path = tmp_path / 'map.npy'
    np.save(path, labels)
    data = path.read_bytes()
    assert np.array_equal(read_superpixels(str(path)), labels)
    lengths = list(range(256)) + list(range(256, len(data), 37))  # the header, then spread
    counts = _outcomes(path, (data[:n] for n in lengths), read_superpixels, _same_map(labels))
    assert counts == Counter(error=len(lengths))
    path.write_bytes(data + b'\0\0')  # grown: also a size the header does not give
    with pytest.raises(DamagedFileError, match=r'map\.npy: unreadable superpixel map \(7682 '
                       r'bytes of array data, but the header says uint16 of shape \(48, 80\)'):
        read_superpixels(str(path))


# -- teacher checkpoints --------------------------------------------------------------------
def _small_checkpoint() -> dict:
    """What tools/convert_teacher_checkpoint.py writes, at a small size."""
    gen = torch.Generator().manual_seed(0)
    return {'state_dict': {'conv1.weight': torch.randn(8, 3, 3, 3, generator=gen),
                           'bn1.running_mean': torch.randn(8, generator=gen),
                           'bn1.num_batches_tracked': torch.tensor(7)},
            'meta': {'source': 'src.pth', 'format': 'moco', 'dropped': ['fc (2 tensors)']}}


def _same_checkpoint(ref: dict) -> Callable[[dict], bool]:
    def same(got: dict) -> bool:
        return got['meta'] == ref['meta'] and got['state_dict'].keys() == ref[
            'state_dict'].keys() and all(
                torch.equal(got['state_dict'][k], v) for k, v in ref['state_dict'].items())
    return same


def _checked_load(path: str) -> dict:
    assert check_checkpoint_file(path)
    return torch.load(path, map_location='cpu', weights_only=True)


def test_every_bit_flip_and_truncation_of_a_checkpoint_is_named_or_harmless(tmp_path):
    """torch.load checks no CRC (most flips load different tensors); the check before it
    does: every flip is an error naming the file or loads the same checkpoint (padding, time
    stamps), every truncation is an error naming it."""
    ref = _small_checkpoint()
    path = tmp_path / 'teacher.pth'
    torch.save(ref, path)
    data = path.read_bytes()
    assert check_zip_file(str(path)) == len(zipfile.ZipFile(path).namelist()) >= 5
    bits = range(0, len(data) * 8, 3)  # every byte, at three or two of its bits
    counts = _outcomes(path, (_flipped(data, b) for b in bits), _checked_load,
                       _same_checkpoint(ref))
    # the harmless flips: the padding that aligns the tensors, time stamps, versions
    assert counts['error'] > 0.7 * len(bits), counts
    counts = _outcomes(path, _every_truncation(data), _checked_load, _same_checkpoint(ref))
    assert counts == Counter(error=len(data))


def test_a_damaged_teacher_checkpoint_is_named_when_the_teacher_loads(tmp_path):
    from projects.img2lidar.preparation.teacher_checkpoints import (ConversionError,
                                                                    load_source)
    cfg = Config.fromfile(str(
        REPO_ROOT / 'configs/_base_/models/mobilenetv2-imagenet-dilated_teacher.py'))
    teacher = MODELS.build(cfg.teacher_model.teacher)
    path = tmp_path / 'teacher.pth'
    torch.save({'state_dict': teacher.backbone.state_dict()}, path)
    data = path.read_bytes()
    middle = len(data) // 2 * 8  # inside a weight tensor
    path.write_bytes(_flipped(data, middle))
    damaged = MODELS.build(dict(cfg.teacher_model.teacher, checkpoint=str(path)))
    with pytest.raises(DamagedFileError, match=r'teacher\.pth: zip member .*CRC-32'):
        damaged.init_weights()
    with pytest.raises(ConversionError, match=r'teacher\.pth: zip member .*CRC-32'):
        load_source(str(path))
    path.write_bytes(data[:len(data) // 3])
    with pytest.raises(DamagedFileError, match=r'teacher\.pth: not a readable zip file'):
        damaged.init_weights()
    path.write_bytes(data)
    damaged.init_weights()  # the intact file loads
    for key, value in teacher.backbone.state_dict().items():
        assert torch.equal(damaged.backbone.state_dict()[key], value), key


def _first_tensor_byte(path: Path) -> int:
    """The offset of the first byte of the largest tensor a ``torch.save`` file holds."""
    with zipfile.ZipFile(path) as zf:
        info = max((i for i in zf.infolist() if '/data/' in i.filename),
                   key=lambda i: i.file_size)
    head = path.read_bytes()[info.header_offset:info.header_offset + 30]
    return info.header_offset + 30 + int.from_bytes(head[26:28], 'little') + \
        int.from_bytes(head[28:30], 'little')


def test_damaged_student_checkpoints_and_text_embeddings_are_named(tmp_path):
    """The other torch.save files the project reads: pretraining checkpoints (a segmentor's
    PretrainedStudent init, the zero-shot segmentor) and the text embeddings."""
    from torch import nn

    from projects.img2lidar.models.segmentors.zero_shot_segmentor import ZeroShotSegmentor
    from projects.img2lidar.models.student_checkpoint import PretrainedStudentInit
    model = nn.Module()
    model.backbone = nn.Linear(16, 16)
    student = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in
                               model.backbone.state_dict().items()}}, student)
    embeddings = tmp_path / 'text.pth'
    torch.save({'embeddings': torch.eye(4, 8), 'classes': ['a', 'b', 'c', 'd']}, embeddings)
    PretrainedStudentInit(str(student))(model)  # intact: loads
    assert ZeroShotSegmentor._read_embeddings(str(embeddings))[1] == ['a', 'b', 'c', 'd']
    for path in (student, embeddings):
        data = path.read_bytes()
        path.write_bytes(_flipped(data, 8 * _first_tensor_byte(path) + 2))
    with pytest.raises(DamagedFileError, match=r'epoch_1\.pth: zip member .*CRC-32'):
        PretrainedStudentInit(str(student))(model)
    with pytest.raises(DamagedFileError, match=r'text\.pth: zip member .*CRC-32'):
        ZeroShotSegmentor._read_embeddings(str(embeddings))


# -- info files -----------------------------------------------------------------------------
def test_info_files_carry_a_checksum_that_every_flip_breaks(tmp_path, nuscenes_info):
    path = tmp_path / 'infos.pkl'
    side = write_info_file(str(path), nuscenes_info)
    data = path.read_bytes()
    assert side == str(path) + '.sha256'
    assert Path(side).read_text() == f'{hashlib.sha256(data).hexdigest()}  infos.pkl\n'
    assert data == pickle.dumps(nuscenes_info)  # the plain pickle, as mmdet3d reads it
    bits = np.linspace(0, len(data) * 8 - 1, 400).astype(int)
    counts = _outcomes(path, (_flipped(data, b) for b in bits), load_info_file,
                       lambda got: False)
    assert counts == Counter(error=len(bits))
    counts = _outcomes(path, (data[:n] for n in (0, 1, 100, len(data) // 2, len(data) - 1)),
                       load_info_file, lambda got: False)
    assert counts == Counter(error=5)
    path.write_bytes(data)
    Path(side).write_text('not a checksum\n')
    with pytest.raises(DamagedFileError, match=r'infos\.pkl\.sha256: not a SHA-256'):
        load_info_file(str(path))


def test_truncated_info_files_without_a_checksum_are_named(tmp_path, nuscenes_info):
    """mmdet3d's info files have no sidecar: truncation still names the file (pickle's own
    error does not)."""
    path = tmp_path / 'infos.pkl'
    data = pickle.dumps(nuscenes_info)
    counts = _outcomes(path, (data[:n] for n in (0, 1, 2, 57, len(data) // 3, len(data) - 1)),
                       load_info_file, lambda got: False)
    assert counts == Counter(error=6)


@pytest.mark.parametrize('dataset', [
    dict(type='ImageLidarPretrainDataset', data_prefix=dict(pts='', img='', sp='sp')),
    dict(type='PandaSetSegDataset'), dict(type='NuScenesLidarSegDataset'),
    dict(type='SemanticKittiFewShotDataset')], ids=lambda d: d['type'])
def test_datasets_name_a_truncated_or_damaged_info_file(tmp_path, nuscenes_root, dataset):
    data = sample_info_file(nuscenes_root).read_bytes()
    path = tmp_path / 'infos.pkl'
    path.write_bytes(data[:len(data) // 2])
    cfg = dict(dataset, ann_file=str(path), data_root=str(nuscenes_root), pipeline=[])
    with pytest.raises(DamagedFileError, match=r'infos\.pkl: truncated or damaged info file'):
        DATASETS.build(cfg)
    write_info_file(str(path), pickle.loads(data))
    path.write_bytes(_flipped(path.read_bytes(), 8 * 1000 + 3))
    with pytest.raises(DamagedFileError, match=r'infos\.pkl: SHA-256 .* does not match'):
        DATASETS.build(cfg)


def test_the_info_tools_write_checksums(tmp_path):
    """tools/create_pretrain_infos.py and tools/create_pandaset_infos.py (their functions)."""
    pytest.importorskip('nuscenes')
    from projects.img2lidar.preparation.pandaset_infos import create_pandaset_infos
    from projects.img2lidar.preparation.pretrain_infos import create_pretrain_infos
    from test_create_pretrain_infos import _write_database
    synth = pytest.importorskip('synthetic_pandaset')
    _write_database(str(tmp_path / 'nusc'))
    written = list(create_pretrain_infos(str(tmp_path / 'nusc'), 'v1.0-mini',
                                         str(tmp_path / 'nusc_infos')).values())
    synth.write_synthetic_pandaset(tmp_path / 'pandaset')
    written += list(create_pandaset_infos(str(tmp_path / 'pandaset'), str(tmp_path / 'ps'),
                                          progress=False).values())
    assert len(written) == 5
    for path in written:
        data = Path(path).read_bytes()
        assert Path(path + '.sha256').read_text() == \
            f'{hashlib.sha256(data).hexdigest()}  {Path(path).name}\n'
        assert load_info_file(path) == pickle.loads(data)


# -- point files ----------------------------------------------------------------------------
def test_point_files_cut_inside_a_point_are_named(tmp_path):
    """Raw float32 records (PandaSet's six columns here): a size that is not a whole number of
    points is an error naming the file; a file cut at a point boundary cannot be told from a
    shorter sweep, and a flipped bit not from another value."""
    points = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)
    data = points.tobytes()
    path = tmp_path / '001_00.bin'
    load = LoadLidarPoints(load_dim=6)
    for n in range(len(data)):
        path.write_bytes(data[:n])
        if n % 24:
            with pytest.raises(ValueError, match=r'001_00\.bin: size .* not a whole number'):
                load(dict(lidar_path=str(path)))
        else:
            assert np.array_equal(load(dict(lidar_path=str(path)))['points'], points[:n // 24])
