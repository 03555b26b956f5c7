"""Network region sources through the generator and the tools, offline: a tiny random SAM
(transformers' SamModel saved into tmp_path), a tiny random teacher for the feature k-means;
the sidecar as the tool writes it and as a pretraining dataset checks it; the map checker's
command line."""
import hashlib
import importlib.util
import pickle
import shutil

import cv2
import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger

from conftest import NUSCENES_SAMPLE, REPO_ROOT, sample_info_file
from tiny_sam import write_tiny_sam

from projects.img2lidar.preparation.regions import (SuperpixelSourceError,
                                                    build_region_generator, read_sidecar)
from projects.img2lidar.preparation.regions.checkpoint_hash import checkpoint_sha256

#: the prompts and filters that let a random SAM keep masks (its IoU predictions are ~0)
TINY_SAM_OPTIONS = dict(points_per_side=4, points_per_batch=8, pred_iou_thresh=0.0,
                        stability_score_thresh=0.0)


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tiny_sam(tmp_path_factory):
    """A random SamModel of 64x64 inputs and its image processor (tests/tiny_sam.py)."""
    return write_tiny_sam(tmp_path_factory.mktemp('tiny_sam'))


@pytest.fixture(scope='module')
def small_images(tmp_path_factory):
    """Three 48x80 crops of the nuScenes sample's images and an info file listing them (two
    cameras of one sample, one of another)."""
    root = tmp_path_factory.mktemp('region_images')
    (root / 'images').mkdir()
    names = [f'img{i}.jpg' for i in range(3)]
    for name, p in zip(names, sorted(NUSCENES_SAMPLE.glob('*CAM_*.jpg'))):
        img = cv2.resize(cv2.imread(str(p)), (80, 45), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(root / 'images' / name), img)
    info = dict(metainfo=dict(dataset='test'), data_list=[
        dict(token='s0', images=dict(CAM_A=dict(img_path=names[0], sample_data_token='t0'),
                                     CAM_B=dict(img_path=names[1], sample_data_token='t1'))),
        dict(token='s1', images=dict(CAM_A=dict(img_path=names[2], sample_data_token='t2')))])
    with open(root / 'infos.pkl', 'wb') as f:
        pickle.dump(info, f)
    return root


def _rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _maps(folder):
    from projects.img2lidar.datasets.transforms.superpixel_map import read_superpixels
    return {p.relative_to(folder).as_posix(): read_superpixels(str(p))
            for p in sorted(folder.glob('*/*.npz'))}


def test_tiny_sam_generator_shapes_dtypes_determinism(tiny_sam, small_images):
    gen = build_region_generator(dict(type='sam', checkpoint=str(tiny_sam), max_regions=6,
                                      device='cpu', **TINY_SAM_OPTIONS))
    image = _rgb(small_images / 'images' / 'img0.jpg')
    masks, scores = gen.masks(image)
    assert len(masks) > 0 and masks[0].shape == image.shape[:2] and len(scores) == len(masks)
    labels = gen.generate(image)
    assert labels.shape == image.shape[:2] and labels.dtype == np.int32
    ids = np.unique(labels)
    assert ids.min() >= -1 and ids.max() < 6
    np.testing.assert_array_equal(ids[ids >= 0], np.arange((ids >= 0).sum()))  # 0..n-1
    np.testing.assert_array_equal(gen.generate(image), labels)
    spec = gen.spec()
    assert spec['name'] == 'sam' and spec['unassigned'] is True
    assert spec['parameters']['model_type'] == 'sam'
    assert spec['parameters']['points_per_side'] == 4
    assert {'torch', 'transformers'} <= set(spec['versions'])
    # the fills leave no unassigned pixel
    for fill in ('nearest', 'slic'):
        filled = build_region_generator(dict(type='sam', checkpoint=str(tiny_sam), fill=fill,
                                             max_regions=2, fill_slic=dict(n_segments=10),
                                             **TINY_SAM_OPTIONS))
        assert filled.generate(image).min() == 0 and filled.spec()['unassigned'] is False


def test_checkpoint_hash_follows_the_folder_content(tiny_sam, tmp_path):
    copy = tmp_path / 'copy'
    shutil.copytree(tiny_sam, copy)
    assert checkpoint_sha256(str(copy)) == checkpoint_sha256(str(tiny_sam))
    (copy / 'config.json').write_text((copy / 'config.json').read_text() + ' ')
    assert checkpoint_sha256(str(copy)) != checkpoint_sha256(str(tiny_sam))
    with pytest.raises(FileNotFoundError, match='not a local checkpoint folder'):
        build_region_generator(dict(type='sam', checkpoint=str(tmp_path / 'none')))


def test_tool_with_tiny_sam_writes_maps_and_sidecar_and_resumes(tiny_sam, small_images,
                                                                  tmp_path, capsys):
    main = _tool('create_superpixels').main
    out = tmp_path / 'sam_maps'
    args = [str(small_images / 'infos.pkl'), '--data-root', str(small_images), '--img-prefix',
            'images', '--out-dir', str(out), '--generator', 'sam', '--checkpoint',
            str(tiny_sam), '--batch-size', '2', '--workers', '2', '--options',
            *[f'{k}={v}' for k, v in TINY_SAM_OPTIONS.items()], 'max_regions=6']
    assert main(args) == 0
    text = capsys.readouterr().out
    assert '1 info file(s), 3 images, 0 already done, 3 to compute in batches of 2' in text
    assert "negative_superpixels='ignore'" in text
    maps = _maps(out)
    assert sorted(maps) == ['CAM_A/img0.npz', 'CAM_A/img2.npz', 'CAM_B/img1.npz']
    for name, labels in maps.items():
        assert labels.shape == (45, 80) and labels.dtype in (np.uint8, np.int16)
        assert labels.min() >= -1 and labels.max() < 6
    # the maps are the generator's, image by image
    gen = build_region_generator(dict(type='sam', checkpoint=str(tiny_sam), max_regions=6,
                                      **TINY_SAM_OPTIONS))
    np.testing.assert_array_equal(maps['CAM_B/img1.npz'],
                                  gen.generate(_rgb(small_images / 'images' / 'img1.jpg')))
    sidecar = read_sidecar(str(out))
    assert sidecar['generator'] == 'sam' and sidecar['unassigned'] is True
    assert sidecar['checkpoint_sha256'] == checkpoint_sha256(str(tiny_sam))
    assert sidecar['parameters']['max_regions'] == 6 and sidecar['map_format'] == 'npz'
    # a rerun computes nothing; other parameters into the same folder are refused
    assert main(args) == 0
    assert '3 images, 3 already done, 0 to compute' in capsys.readouterr().out
    with pytest.raises(SuperpixelSourceError, match=r'max_regions: 6 in the folder, 5 now'):
        main(args[:-1] + ['max_regions=5'])
    with pytest.raises(SystemExit, match='SLIC options, but the generator is'):
        main(args + ['--downscale', '2'])


def test_tool_keeps_slic_by_default_and_leaves_old_folders_without_sidecar(small_images,
                                                                             tmp_path, capsys):
    from projects.img2lidar.preparation.superpixels import slic_superpixels
    main = _tool('create_superpixels').main
    out = tmp_path / 'slic'
    args = [str(small_images / 'infos.pkl'), '--data-root', str(small_images), '--img-prefix',
            'images', '--out-dir', str(out), '--workers', '1', '--n-segments', '20']
    assert main(args) == 0
    maps = _maps(out)
    bgr = cv2.imread(str(small_images / 'images' / 'img2.jpg'))
    np.testing.assert_array_equal(maps['CAM_A/img2.npz'], slic_superpixels(bgr, n_segments=20))
    assert maps['CAM_A/img2.npz'].dtype == np.uint8
    assert read_sidecar(str(out))['parameters']['n_segments'] == 20
    # a folder of maps made before sidecars: resumed, and left without one
    (out / 'superpixels.json').unlink()
    (out / 'CAM_A' / 'img0.npz').unlink()
    capsys.readouterr()
    assert main(args) == 0
    assert 'holds maps but no superpixels.json' in capsys.readouterr().out
    assert read_sidecar(str(out)) is None and (out / 'CAM_A' / 'img0.npz').is_file()


def _tiny_teacher(tmp_path):
    """A config file of a random MobileNetV2 teacher (stride 8, 8 channels) and its weights."""
    from mmdet3d.registry import MODELS
    backbone = dict(type='DilatedMobileNetV2', widen_factor=0.25, out_indices=(2, ),
                    norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True)
    torch.manual_seed(0)
    ckpt = tmp_path / 'tiny_teacher.pth'
    torch.save(MODELS.build(backbone).state_dict(), ckpt)
    config = tmp_path / 'tiny_teacher.py'
    config.write_text(f'teacher_model = dict(teacher=dict(type="FrozenImageTeacher", '
                      f'checkpoint="{ckpt}", backbone={backbone!r}))\n')
    return str(config)


def test_teacher_regions_per_image_and_shared_codebook(small_images, tmp_path):
    teacher = _tiny_teacher(tmp_path)
    images = [_rgb(small_images / 'images' / f'img{i}.jpg') for i in range(3)]
    common = dict(type='teacher_kmeans', teacher=teacher, input_width=64, assign_stride=2,
                  device='cpu')
    per_image = build_region_generator(dict(common, clusters=5))
    maps = per_image.generate_batch(images)
    for img, labels in zip(images, maps):
        assert labels.shape == img.shape[:2] and labels.dtype == np.int32
        np.testing.assert_array_equal(np.unique(labels), np.arange(labels.max() + 1))
        assert labels.max() < 5
    np.testing.assert_array_equal(per_image.generate(images[1]), maps[1])
    # the codebook: fitted once over the images, written, read back (not refitted)
    book = tmp_path / 'book.npz'
    paths = [str(small_images / 'images' / f'img{i}.jpg') for i in range(3)]
    coded = build_region_generator(dict(common, mode='codebook', clusters=4, codebook=str(book),
                                        position_weight=0.5, cells_per_image=20))
    coded.prepare(paths)
    assert book.is_file()
    first = coded.generate_batch(images)
    assert all(m.max() < 4 and m.min() >= 0 for m in first)
    assert coded.parameters()['codebook_sha256'] == hashlib.sha256(book.read_bytes()).hexdigest()
    stamp = book.stat().st_mtime_ns
    again = build_region_generator(dict(common, mode='codebook', clusters=4, codebook=str(book),
                                        position_weight=0.5))
    again.prepare(paths)
    assert book.stat().st_mtime_ns == stamp
    for a, b in zip(first, again.generate_batch(images)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match='position_weight: 0.5 in the codebook, 1.0 asked'):
        build_region_generator(dict(common, mode='codebook', clusters=4,
                                    codebook=str(book))).prepare(paths)


# the sidecar as a pretraining dataset reads it -----------------------------------------------
def _dataset(root, sp, **kwargs):
    from mmdet3d.registry import DATASETS
    return DATASETS.build(dict(type='ImageLidarPretrainDataset', data_root=str(root),
                               ann_file=str(sample_info_file(root)),
                               data_prefix=dict(pts='', img='', sp=str(sp)), **kwargs))


def _write_sidecar(folder, generator='slic', unassigned=False, **params):
    from projects.img2lidar.preparation.regions import write_sidecar
    write_sidecar(str(folder), dict(generator=generator, parameters=params,
                                    checkpoint_sha256=None, unassigned=unassigned,
                                    versions={}))


class _Logs:
    def __init__(self):
        self.lines = []

    def __enter__(self):
        logger = MMLogger.get_current_instance()
        self._info, self._warning = logger.info, logger.warning
        logger.info = lambda msg, *a, **k: self.lines.append(('info', msg))
        logger.warning = lambda msg, *a, **k: self.lines.append(('warning', msg))
        self.logger = logger
        return self

    def __exit__(self, *exc):
        self.logger.info, self.logger.warning = self._info, self._warning


def test_dataset_logs_and_checks_the_sidecar(nuscenes_root, tmp_path):
    sp = tmp_path / 'sp'
    sp.mkdir()
    # absent: accepted with a warning
    with _Logs() as logs:
        _dataset(nuscenes_root, sp)
    assert any(kind == 'warning' and 'no superpixels.json' in msg for kind, msg in logs.lines)
    # agreeing: SLIC by default; a stated parameter must match
    _write_sidecar(sp, downscale=2.0, n_segments=150)
    with _Logs() as logs:
        _dataset(nuscenes_root, sp)
        _dataset(nuscenes_root, sp, superpixel_source=dict(generator='slic', downscale=2))
    assert any(kind == 'info' and f'superpixels of {sp}: slic (downscale=2.0, n_segments=150)'
               in msg for kind, msg in logs.lines)
    with pytest.raises(SuperpixelSourceError, match='downscale: 2.0 in the maps, 1 expected'):
        _dataset(nuscenes_root, sp, superpixel_source=dict(generator='slic', downscale=1))
    # disagreeing generator
    _write_sidecar(sp, generator='teacher_kmeans', mode='codebook')
    with pytest.raises(SuperpixelSourceError,
                       match="generator: 'teacher_kmeans' made them, 'slic' expected"):
        _dataset(nuscenes_root, sp)
    _dataset(nuscenes_root, sp, superpixel_source=dict(generator='teacher_kmeans'))


def test_dataset_refuses_unassigned_maps_with_a_strict_loader(nuscenes_root, tmp_path):
    sp = tmp_path / 'sp'
    _write_sidecar(sp, generator='sam', unassigned=True)
    loader = dict(type='LoadMultiViewImagesAndSuperpixels')
    with pytest.raises(SuperpixelSourceError, match="set its negative_superpixels='ignore'"):
        _dataset(nuscenes_root, sp, superpixel_source=dict(generator='sam'), pipeline=[loader])
    _dataset(nuscenes_root, sp, superpixel_source=dict(generator='sam'),
             pipeline=[dict(loader, negative_superpixels='ignore')])


# the checker's command line ------------------------------------------------------------------
def test_check_tool_reports_clean_wrapped_and_zero_trap_folders(tmp_path, capsys):
    main = _tool('check_superpixels').main
    grid = np.kron(np.arange(12 * 16).reshape(12, 16), np.ones((6, 6), dtype=np.int64))
    clean, bad = tmp_path / 'clean', tmp_path / 'bad'
    (clean / 'CAM').mkdir(parents=True)
    (bad / 'CAM').mkdir(parents=True)
    images = tmp_path / 'images' / 'CAM'
    images.mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(clean / 'CAM' / f'f{i}.png'), grid.astype(np.uint8))
        cv2.imwrite(str(images / f'f{i}.jpg'), np.zeros((72, 96 if i == 0 else 90, 3),
                                                        np.uint8))
    assert main([str(clean)]) == 0
    text = capsys.readouterr().out
    assert 'regions/map   min 192, median 192, max 192' in text and 'OK: no problem' in text
    # one image of another size
    assert main([str(clean), '--images', str(tmp_path / 'images')]) == 1
    text = capsys.readouterr().out
    assert '1 of 2 maps match their image' in text
    assert 'size: 1 maps differ' in text and 'f1.png: 96x72, image 90x72' in text
    # a wrapped map (300 masks as uint8) and one with 0 as unassigned
    wrapped = np.kron(np.arange(20 * 15).reshape(20, 15), np.ones((4, 4), dtype=np.int64))
    cv2.imwrite(str(bad / 'CAM' / 'wrapped.png'), (wrapped % 256).astype(np.uint8))
    zero = grid.copy()
    zero[2::5, 2::5] = 0
    cv2.imwrite(str(bad / 'CAM' / 'zero.png'), zero.astype(np.uint8))
    assert main([str(bad)]) == 1
    text = capsys.readouterr().out
    assert 'uint8 wrap: 1 maps use all 256 ids' in text and 'wrapped.png' in text
    assert '0 as unassigned: in 1 maps id 0 falls into far more pieces' in text
    assert 'zero.png' in text.split('0 as unassigned')[1]


def test_benchmark_regions_on_the_pandaset_sample(tmp_path):
    """tools/benchmark_regions.py on the real labelled frames, with the two reference sources
    (no teacher weights needed): one region per image is far less pure than a grid of 144
    cells, and its purity is the majority class's share, at most 1."""
    import json

    from conftest import PANDASET_SAMPLE, require
    sample = require(PANDASET_SAMPLE)
    main = _tool('benchmark_regions').main
    assert main(['--pandaset-root', str(sample), '--work-dir', str(tmp_path),
                 '--sources', 'grid', 'whole']) == 0
    rows = {r['source']: r for r in json.loads((tmp_path / 'regions.json').read_text())}
    assert rows['whole']['regions_per_image'] == 1 and rows['grid']['regions_per_image'] > 100
    assert 0 < rows['whole']['purity'] < rows['grid']['purity'] <= 1
    assert rows['whole']['points'] == rows['grid']['points'] > 0
    assert (tmp_path / 'regions.md').read_text().startswith('| source |')
