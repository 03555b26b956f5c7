"""tools/browse_dataset.py: a pretraining sample's images, superpixels and point-pixel pairs
(the shipped ST-SLidR config on the real nuScenes sample), and the bird's-eye view of a
segmentation sample's labels (the shipped SemanticKITTI config), with no checkpoint."""
import importlib.util
import json
import sys

import cv2
import numpy as np
from mmdet3d.registry import DATASETS
from mmengine.config import Config
from mmengine.runner import set_random_seed

from conftest import CAMERAS, REPO_ROOT, ST_CONFIG, run_tool, sample_info_file, write_info

#: pairs per camera of the nuScenes sample with depth > 1 m inside the 1600x900 image
#: (tests/data/README.md): the whole image, which the val pipeline keeps, holds them all
ORACLE_PAIRS = dict(CAM_FRONT=3067, CAM_FRONT_RIGHT=3079, CAM_FRONT_LEFT=3704, CAM_BACK=4826,
                    CAM_BACK_LEFT=4097, CAM_BACK_RIGHT=3379)


def browse_main(argv: list) -> int:
    """tools/browse_dataset.py's ``main``, run in this process."""
    spec = importlib.util.spec_from_file_location('browse_dataset',
                                                  REPO_ROOT / 'tools' / 'browse_dataset.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def data_options(root, ann) -> list:
    """--cfg-options pointing the config's train dataset at the flat sample root."""
    return ([f'train_dataloader.dataset.data_root={root}',
             f'train_dataloader.dataset.ann_file={ann}',
             'train_dataloader.dataset.data_prefix.pts=',
             'train_dataloader.dataset.data_prefix.sp=superpixels'] +
            [f'train_dataloader.dataset.data_prefix.{cam}=' for cam in CAMERAS])


def pipeline_pairs(options: list, index: int, seed: int) -> dict:
    """Pairs per camera of one sample, from the config's train dataset and pipeline run here
    (the same seeding as the tool's ``--seed``)."""
    cfg = Config.fromfile(str(ST_CONFIG))
    cfg.merge_from_dict(dict(o.split('=', 1) for o in options))
    dataset = DATASETS.build(dict(cfg.train_dataloader.dataset, skip_bad_samples=False))
    set_random_seed(seed + index)
    pairs = dataset.prepare_data(index)['inputs']['pairs']
    return dict(zip(CAMERAS, np.bincount(pairs['cam'].numpy(), minlength=6).tolist()))


def test_pretraining_samples_augmented(nuscenes_root, tmp_path):
    ann = write_info(tmp_path / 'two.pkl', nuscenes_root, copies=2)
    options = data_options(nuscenes_root, ann)
    out_dir = tmp_path / 'browse'
    out = run_tool([sys.executable, 'tools/browse_dataset.py',
                    str(ST_CONFIG.relative_to(REPO_ROOT)), '--out-dir', str(out_dir),
                    '--samples', '2', '--seed', '7', '--cfg-options', *options])
    summary = json.loads((out_dir / 'summary.json').read_text())
    assert summary['pipeline'] == 'train_dataloader'
    assert sorted(p.name for p in out_dir.glob('*.png')) == sorted(
        f'{i:05d}_{cam}.png' for i in range(2) for cam in CAMERAS)
    for i, record in enumerate(summary['samples']):
        assert record['index'] == i and 'skipped' not in record
        expected = pipeline_pairs(options, i, seed=7)
        assert record['pairs'] == expected
        img = cv2.imread(str(out_dir / f'{i:05d}_CAM_FRONT.png'))
        assert img.shape == (224, 416, 3)  # the config's crop size
    total = sum(sum(r['pairs'].values()) for r in summary['samples'])
    assert f'wrote 12 PNGs of 2 samples (0 refused, {total} pairs drawn)' in out.stdout


def test_pretraining_sample_without_augmentation(nuscenes_root, tmp_path):
    options = data_options(nuscenes_root, sample_info_file(nuscenes_root))
    out_dir = tmp_path / 'browse'
    assert browse_main([str(ST_CONFIG), '--out-dir', str(out_dir), '--samples', '5',
                        '--no-augment', '--cfg-options', *options]) == 0
    summary = json.loads((out_dir / 'summary.json').read_text())
    assert summary['pipeline'] == 'val_dataloader'
    [record] = summary['samples']  # the info file holds one sample
    assert record['pairs'] == ORACLE_PAIRS
    assert len(list(out_dir.glob('*.png'))) == 6


def test_segmentation_sample_bird_eye_view(tmp_path):
    from test_create_semantickitti_infos import make_root

    from projects.img2lidar.preparation.semantickitti_infos import create_semantickitti_infos
    root = make_root(tmp_path / 'semantickitti')
    create_semantickitti_infos(str(root), splits=['val'])
    out_dir = tmp_path / 'browse'
    config = REPO_ROOT / 'configs/finetune/minkunet34_2xb8-100e_semantickitti-1pct.py'
    assert browse_main([str(config), '--out-dir', str(out_dir), '--split', 'val', '--samples',
                        '2', '--no-augment', '--cfg-options',
                        f'val_dataloader.dataset.data_root={root}']) == 0
    assert sorted(p.name for p in out_dir.glob('*.png')) == ['00000_bev.png', '00001_bev.png']
    record = json.loads((out_dir / 'summary.json').read_text())['samples'][0]
    # the fixture scan's raw labels through semantic-kitti.yaml's learning map: 25 x 50
    # (building), 17 x 70 (vegetation), 3 x 71 (trunk), 2 x 80 (pole), 2 x 0 + 1 x 52 (ignored)
    assert record['points_per_class'] == dict(building=25, vegetation=17, trunk=3, pole=2,
                                              ignored=3)
    bev = cv2.imread(str(out_dir / '00000_bev.png'))
    assert bev.shape == (400, 400 + 8 + 190, 3)  # one view, a gap, the legend
