"""Superpixel ids: any integer labelling of a partition gives the same pooled features and loss;
ids are relabelled at load and never pass through a float."""
import pickle

import numpy as np
import pytest
import torch
from mmdet3d.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from torch.nn import functional as F

from conftest import (CAMERAS, REPO_ROOT, deterministic_pretrain_pipeline,
                      small_pretrain_overrides, sample_info_file)
from projects.img2lidar.datasets.transforms import compact_superpixel_ids
from projects.img2lidar.models.superpixel_pooling import nearest_resize_labels


def test_compact_ids_by_hand():
    # ids in [0, 4096): used as they are (no copy), the id range is the largest id plus one
    sp = np.array([[5, 5, 9], [2, 9, 9]], dtype=np.uint16)
    same, n = compact_superpixel_ids(sp)
    assert same is sp and n == 10
    compact = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    same, n = compact_superpixel_ids(compact)
    assert same is compact and n == 3
    # larger ids: relabelled to 0..n-1 in increasing order of the ids
    out, n = compact_superpixel_ids(sp.astype(np.int32) + 5000)
    assert n == 3 and out.tolist() == [[1, 1, 2], [0, 2, 2]]
    huge = np.array([[2**40, 7], [2**40 + 1, 7]], dtype=np.int64)
    out, n = compact_superpixel_ids(huge)
    assert n == 3 and out.tolist() == [[1, 0], [2, 0]] and out.dtype == np.int32
    out, n = compact_superpixel_ids(huge.astype(np.uint64))
    assert n == 3 and out.tolist() == [[1, 0], [2, 0]]
    with pytest.raises(ValueError, match=r'x\.npz: 2 pixels have a negative superpixel id '
                                         r'\(smallest -4\)'):
        compact_superpixel_ids(np.array([[-4, 3], [-1, 3]]), 'x.npz')
    out, n = compact_superpixel_ids(np.array([[-4, 3], [8, 3]]), negative='ignore')
    assert n == 2 and out.tolist() == [[-1, 0], [1, 0]]


@pytest.mark.parametrize('size', [(56, 104), (16, 32), (13, 29), (224, 416)])
def test_nearest_resize_equals_interpolate_and_keeps_large_ids(size):
    g = torch.Generator().manual_seed(0)
    small = torch.randint(0, 1000, (3, 224, 416), generator=g)
    ref = F.interpolate(small[:, None].float(), size=size, mode='nearest')[:, 0].long()
    assert torch.equal(nearest_resize_labels(small, size), ref)
    # ids above 2**24 are not representable in float32: 2**40 and 2**40 + 1 would merge
    big = small + 2**40
    assert torch.equal(nearest_resize_labels(big, size), ref + 2**40)
    assert float(2**40) == float(torch.tensor(2**40 + 1, dtype=torch.float32))


@pytest.fixture(scope='module')
def relabelled_root(nuscenes_root, tmp_path_factory):
    """The sample's maps with every id sent through a random injective map into [0, 2**40),
    stored as int64 .npy files in ``superpixels_hashed/``."""
    with open(sample_info_file(nuscenes_root), 'rb') as f:
        info = pickle.load(f)
    out = tmp_path_factory.mktemp('hashed')
    rng = np.random.default_rng(7)
    for cam in CAMERAS:
        stem = info['data_list'][0]['images'][cam]['img_path'].rsplit('/', 1)[-1]
        stem = stem.rsplit('.', 1)[0]
        labels = np.load(nuscenes_root / 'superpixels' / cam / (stem + '.npz'))['labels']
        n = int(labels.max()) + 1
        codes = np.unique(rng.integers(0, 2**40, size=4 * n))
        codes = rng.permutation(codes)[:n]
        assert len(codes) == n
        (out / cam).mkdir()
        np.save(out / cam / (stem + '.npy'), codes[labels.astype(np.int64)])
    return out


def _loss_and_rows(nuscenes_root, sp_dir, suffix, model):
    ds = DATASETS.build(dict(type='ImageLidarPretrainDataset',
                             ann_file=str(sample_info_file(nuscenes_root)),
                             data_root=str(nuscenes_root),
                             data_prefix=dict(pts='', img='', sp=str(sp_dir)),
                             superpixel_suffix=suffix,
                             pipeline=deterministic_pretrain_pipeline()))
    data = model.data_preprocessor(pseudo_collate([ds[0]]), True)
    with torch.no_grad():
        losses = model(**data, mode='loss')
        feats = model.extract_features(data['inputs'], data['data_samples'],
                                       gather=False).superpixel
    rows = torch.cat([feats.k, feats.q, feats.e], dim=1).numpy()
    return losses, rows[np.lexsort(rows.T[::-1])]


def test_any_labelling_gives_the_same_loss(nuscenes_root, relabelled_root):
    cfg = Config.fromfile(
        str(REPO_ROOT / 'configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py'))
    small_pretrain_overrides(cfg)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    compact, rows_c = _loss_and_rows(nuscenes_root, nuscenes_root / 'superpixels', '.npz', model)
    hashed, rows_h = _loss_and_rows(nuscenes_root, relabelled_root, '.npy', model)
    assert compact['num_superpixels'].item() == hashed['num_superpixels'].item() > 100
    # the same superpixels, pooled from the same pairs and pixels: the same rows
    np.testing.assert_array_equal(rows_h, rows_c)
    torch.testing.assert_close(hashed['loss_st'], compact['loss_st'], rtol=1e-5, atol=0)


def test_npz_maps_read_like_numpy_and_damage_names_the_file(tmp_path):
    """read_superpixels inflates .npz maps itself (checked against the entry's CRC-32): the
    same arrays as np.load for every integer type, deflated or stored, and a damaged file is an
    error naming it (every bit flip: tests/test_stored_file_damage.py)."""
    from projects.img2lidar.datasets.transforms import read_superpixels
    rng = np.random.default_rng(0)
    maps = {'u8': rng.integers(0, 200, (90, 160)).astype(np.uint8),
            'u16': rng.integers(0, 5000, (90, 160)).astype(np.uint16),
            'i32': rng.integers(-3, 300, (90, 160)).astype(np.int32),
            'i64': rng.integers(0, 2**40, (9, 16)).astype(np.int64)}
    for name, labels in maps.items():
        path = tmp_path / f'{name}.npz'
        np.savez_compressed(path, labels=labels)
        got = read_superpixels(str(path))
        assert got.dtype == labels.dtype and np.array_equal(got, labels)
        plain = tmp_path / f'{name}_stored.npz'
        np.savez(plain, labels=labels)  # stored, not deflated
        assert np.array_equal(read_superpixels(str(plain)), labels)
    data = bytearray((tmp_path / 'u16.npz').read_bytes())
    data[200:260] = bytes(60)  # inside the compressed stream
    (tmp_path / 'bad.npz').write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r'bad\.npz: unreadable superpixel map'):
        read_superpixels(str(tmp_path / 'bad.npz'))
