"""No run dies late for a file it could have checked at its start: the data-file check before the
first iteration, the info-file checks at dataset init, several info files for the superpixel
tool, the files a dataset reads by kind, and tools/verify_data.py.

The demo world here has one sample in each of two v1.0-mini train scenes: scene-0061 goes to
``nuscenes_infos_pretrain.pkl`` and scene-1094 (in the shipped list of held-out scenes) to
``nuscenes_infos_pretrain_val.pkl``; ``nuscenes_infos_val.pkl`` is empty (no mini val scene is
written)."""
import importlib.util
import os
import pickle
import shlex
import shutil
import subprocess
import sys

import pytest
from mmdet3d.registry import DATASETS
from mmengine.config import Config
from mmengine.runner import Runner

from conftest import KITTI_SAMPLE, REPO_ROOT, SEMANTICKITTI_FIXTURE

DEMO_PRETRAIN = REPO_ROOT / 'configs/demo/stslidr_minkunet-w16_mobilenetv2-imagenet_1xb2-6e_demo.py'
DEMO_FINETUNE = REPO_ROOT / 'configs/demo/minkunet-w16_1xb2-30e_demo-fewshot.py'
PRETRAIN_DATA = REPO_ROOT / 'configs/_base_/datasets/nuscenes_pretrain.py'
CAMERAS = ['CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT',
           'CAM_BACK_RIGHT']


class Started(Exception):
    """Raised by the first training step: the run got past its start."""


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _maps(root, *splits):
    from projects.img2lidar.preparation.superpixels import create_superpixels
    for split in splits:
        create_superpixels(str(root / f'nuscenes_infos_{split}.pkl'), str(root),
                           str(root / 'superpixels'), progress=False, downscale=4)


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    """The demo world with its infos and superpixel maps of the training split only, as the
    documented preparation left them."""
    from projects.img2lidar.demo import write_world
    from projects.img2lidar.preparation.pretrain_infos import create_pretrain_infos
    root = tmp_path_factory.mktemp('world')
    write_world(str(root), ['scene-0061', 'scene-1094'], samples_per_scene=1, seed=0)
    create_pretrain_infos(str(root), 'v1.0-mini', str(root))
    _maps(root, 'pretrain')
    return root


@pytest.fixture
def root(world, tmp_path):
    """A writable copy of the world."""
    dst = tmp_path / 'world'
    shutil.copytree(world, dst)
    return dst


def _info(path):
    with open(path, 'rb') as f:
        return pickle.load(f)


def pretrain_cfg(root, work_dir):
    """The demo pretraining config with the shipped pretraining validation on (the
    ``val_dataloader`` of configs/_base_/datasets/nuscenes_pretrain.py: pretrain_val infos,
    with superpixels), one epoch, validation after it, batch 1, no workers."""
    cfg = Config.fromfile(str(DEMO_PRETRAIN))
    data = Config.fromfile(str(PRETRAIN_DATA))
    cfg.model.teacher.checkpoint = None
    cfg.train_dataloader.update(batch_size=1, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.data_root = str(root)
    cfg.val_dataloader = data.val_dataloader
    cfg.val_dataloader.update(batch_size=1, num_workers=0, persistent_workers=False)
    cfg.val_dataloader.dataset.data_root = str(root)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.val_cfg, cfg.test_cfg = dict(type='ValLoop'), dict(type='TestLoop')
    cfg.val_evaluator = cfg.test_evaluator = data.val_evaluator
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
    cfg.param_scheduler = []
    cfg.work_dir = str(work_dir)
    return cfg


def finetune_cfg(root, work_dir):
    """The demo finetuning config on the world: train on the train infos, validate on the
    pretrain_val infos (the world's val split is empty), random init."""
    cfg = Config.fromfile(str(DEMO_FINETUNE))
    cfg.model.init_cfg = None
    cfg.train_dataloader.update(batch_size=1, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.update(data_root=str(root), few_shot=None)
    cfg.val_dataloader.update(num_workers=0, persistent_workers=False)
    cfg.val_dataloader.dataset.update(data_root=str(root),
                                      ann_file='nuscenes_infos_pretrain_val.pkl')
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
    cfg.param_scheduler = []
    cfg.work_dir = str(work_dir)
    return cfg


def _train(cfg):
    """Run the config until its first training step (which raises :class:`Started`)."""
    runner = Runner.from_cfg(cfg)

    def first_step(*args, **kwargs):
        raise Started

    runner.model.train_step = first_step
    try:
        runner.train()
    finally:
        assert runner.iter == 0
    return runner


def test_pretraining_with_validation_stops_before_the_first_iteration_naming_the_command(
        root, tmp_path):
    """The documented preparation made maps for the pretraining split only; a run that
    validates on pretrain_val stops at its start, and the command it names makes exactly the
    missing maps, after which the run starts."""
    with pytest.raises(FileNotFoundError) as err:
        _train(pretrain_cfg(root, tmp_path / 'work'))
    msg = str(err.value)
    print(msg)
    assert '6 of the 26 files this run reads are missing' in msg
    assert '  val    superpixels    6 of 6' in msg
    assert 'train' not in msg.split('First missing files:')[0].split('\n', 1)[1]
    assert str(root / 'superpixels' / 'CAM_FRONT') in msg
    command = (f'python tools/create_superpixels.py {root}/nuscenes_infos_pretrain_val.pkl '
               f"--data-root {root} --img-prefix 'samples/{{cam}}' --out-dir {root}/superpixels")
    assert f'val superpixels: {command}\n' in msg
    assert '--cfg-options default_hooks.data_files.skip=True' in msg
    # the command, run as printed, makes the missing maps, and the run starts
    res = subprocess.run([sys.executable, *shlex.split(command)[1:], '--downscale', '4',
                          '--workers', '1'], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert sorted(os.listdir(root / 'superpixels' / 'CAM_BACK')) == [
        'sample_scene-0061_0__CAM_BACK.npz', 'sample_scene-1094_0__CAM_BACK.npz']
    with pytest.raises(Started):
        _train(pretrain_cfg(root, tmp_path / 'work2'))


def test_maps_missing_for_both_splits_give_one_command(root, tmp_path):
    shutil.rmtree(root / 'superpixels')
    with pytest.raises(FileNotFoundError) as err:
        _train(pretrain_cfg(root, tmp_path / 'work'))
    msg = str(err.value)
    assert '  train  superpixels    6 of 6\n  val    superpixels    6 of 6\n' in msg
    assert (f'train, val superpixels: python tools/create_superpixels.py '
            f'{root}/nuscenes_infos_pretrain.pkl {root}/nuscenes_infos_pretrain_val.pkl '
            f"--data-root {root} --img-prefix 'samples/{{cam}}' --out-dir {root}/superpixels\n"
            ) in msg


def test_skip_option_starts_without_checking(root, tmp_path):
    cfg = pretrain_cfg(root, tmp_path / 'work')
    cfg.merge_from_dict({'default_hooks.data_files.skip': True})  # as --cfg-options does
    with pytest.raises(Started):
        _train(cfg)


def test_a_test_run_checks_its_test_dataset(root, tmp_path):
    runner = Runner.from_cfg(pretrain_cfg(root, tmp_path / 'work'))
    with pytest.raises(FileNotFoundError, match=r'  test   superpixels    6 of 6'):
        runner.test()


def test_missing_image_names_it_and_its_folder(root, tmp_path):
    _maps(root, 'pretrain_val')
    image = _info(root / 'nuscenes_infos_pretrain.pkl')['data_list'][0]['images']['CAM_BACK']
    path = root / 'samples' / 'CAM_BACK' / image['img_path']
    path.unlink()
    with pytest.raises(FileNotFoundError) as err:
        _train(pretrain_cfg(root, tmp_path / 'work'))
    msg = str(err.value)
    assert '1 of the 26 files this run reads are missing' in msg
    assert '  train  images         1 of 6' in msg
    assert f'    {path}\n' in msg
    assert (f"train images: the dataset's images are not at the data root: expected in "
            f'{root}/samples/CAM_BACK (exists, files missing)') in msg


def test_missing_label_file_names_it(root, tmp_path):
    sample = _info(root / 'nuscenes_infos_pretrain_val.pkl')['data_list'][0]
    path = root / sample['pts_semantic_mask_path']
    path.unlink()
    with pytest.raises(FileNotFoundError) as err:
        _train(finetune_cfg(root, tmp_path / 'work'))
    msg = str(err.value)
    # train: the two samples, val: the second of them (distinct: 2 points, 2 labels)
    assert '1 of the 4 files this run reads are missing' in msg
    assert '  train  labels         1 of 2\n  val    labels         1 of 1\n' in msg
    assert f'    {path}\n' in msg
    assert f'expected in {path.parent} (exists, files missing)' in msg


def test_all_present_logs_the_counts(root, tmp_path):
    with pytest.raises(Started):
        _train(finetune_cfg(root, tmp_path / 'work'))
    log = (tmp_path / 'work').rglob('*.log').__next__().read_text()
    assert ('all present (train: 2 points, 2 labels; val: 1 points, 1 labels)') in log


def test_pandaset_validation_maps_name_their_command(tmp_path):
    """The PandaSet pretraining validation (configs/_base_/datasets/pandaset_pretrain.py) on a
    converted root of one frame with two cameras and no maps: the command names the PandaSet
    image layout, and run as printed it makes the maps."""
    import cv2
    import numpy as np
    from types import SimpleNamespace

    from mmengine.logging import MMLogger

    from projects.img2lidar.engine import DataFilesCheckHook
    root = tmp_path / 'pandaset_converted'
    (root / 'points').mkdir(parents=True)
    np.zeros((10, 6), np.float32).tofile(root / 'points' / '001_00.bin')
    images = {}
    for cam in ('front_camera', 'left_camera'):
        (root / 'camera' / cam).mkdir(parents=True)
        cv2.imwrite(str(root / 'camera' / cam / '001_00.jpg'),
                    np.random.default_rng(0).integers(0, 255, (24, 32, 3), np.uint8))
        images[cam] = dict(img_path='001_00.jpg', cam2img=np.eye(3).tolist(),
                           lidar2cam=np.eye(4).tolist())
    with open(root / 'pandaset_infos_val.pkl', 'wb') as f:
        pickle.dump(dict(metainfo=dict(dataset='pandaset'), data_list=[dict(
            token='001_00', lidar_points=dict(lidar_path='001_00.bin', num_pts_feats=6),
            images=images)]), f)
    data = Config.fromfile(str(REPO_ROOT / 'configs/_base_/datasets/pandaset_pretrain.py'))
    val = DATASETS.build(dict(data.val_dataloader.dataset, data_root=f'{root}/'))
    runner = SimpleNamespace(logger=MMLogger.get_current_instance())
    with pytest.raises(FileNotFoundError) as err:
        DataFilesCheckHook().check(runner, dict(val=val))
    command = (f'python tools/create_superpixels.py {root}/pandaset_infos_val.pkl --data-root '
               f"{root}/ --img-prefix 'camera/{{cam}}' --out-dir {root}/superpixels")
    assert f'val superpixels: {command}\n' in str(err.value)
    _tool('create_superpixels').main(shlex.split(command)[2:] + ['--workers', '1'])
    DataFilesCheckHook().check(runner, dict(val=val))  # all there now


@pytest.mark.parametrize('dataset_type', ['ImageLidarPretrainDataset', 'NuScenesLidarSegDataset',
                                          'PandaSetSegDataset', 'SemanticKittiFewShotDataset'])
def test_an_empty_split_is_an_error_naming_its_info_file(world, dataset_type):
    """nuscenes_infos_val.pkl of the world lists no sample (the tool wrote it so)."""
    ann = world / 'nuscenes_infos_val.pkl'
    assert _info(ann)['data_list'] == []
    with pytest.raises(ValueError, match=f'{ann}: the info file lists no samples'):
        DATASETS.build(dict(type=dataset_type, data_root=str(world), ann_file=ann.name,
                            pipeline=[]))


def test_an_empty_few_shot_selection_is_an_error_naming_its_info_file(world):
    ann = world / 'nuscenes_infos_pretrain.pkl'  # one scene: few_shot=1 keeps every 100th
    with pytest.raises(ValueError, match=f'{ann}: few_shot=1 keeps none of the 1 samples'):
        DATASETS.build(dict(type='NuScenesLidarSegDataset', data_root=str(world),
                            ann_file=ann.name, few_shot=1, pipeline=[]))


def test_a_missing_info_file_names_its_command(root):
    (root / 'nuscenes_infos_pretrain_val.pkl').unlink()
    with pytest.raises(FileNotFoundError) as err:
        DATASETS.build(dict(type='ImageLidarPretrainDataset', data_root=str(root),
                            ann_file='nuscenes_infos_pretrain_val.pkl', pipeline=[]))
    assert (f'python tools/create_pretrain_infos.py --root {root} --version v1.0-mini '
            f'--out-dir {root} --splits pretrain_val') in str(err.value)
    kitti = root / 'kitti'
    with pytest.raises(FileNotFoundError) as err:
        DATASETS.build(dict(type='SemanticKittiFewShotDataset', data_root=str(kitti),
                            ann_file='semantickitti_infos_train.pkl', pipeline=[]))
    assert (f'info file not found: {kitti}/semantickitti_infos_train.pkl' in str(err.value))
    assert (f'python tools/create_semantickitti_infos.py --root {kitti} --out-dir {kitti}'
            in str(err.value))


def test_every_shipped_run_config_checks_its_data_files():
    from mmdet3d.registry import HOOKS
    from test_configs import CONFIGS
    assert len(CONFIGS) > 40
    for path in CONFIGS:
        hook = Config.fromfile(path).default_hooks.get('data_files')
        assert hook == dict(type='DataFilesCheckHook'), path
    assert type(HOOKS.build(dict(type='DataFilesCheckHook'))).__name__ == 'DataFilesCheckHook'


def test_superpixel_tool_takes_several_info_files(root, capsys):
    """pretrain (scene-0061) and train (scene-0061 and scene-1094) share six images: twelve
    maps, each made once; the pretrain maps exist already; a second run makes none."""
    main = _tool('create_superpixels').main
    infos = [str(root / 'nuscenes_infos_pretrain.pkl'), str(root / 'nuscenes_infos_train.pkl')]
    args = [*infos, '--data-root', str(root), '--out-dir', str(root / 'superpixels'),
            '--workers', '1', '--downscale', '4']
    assert main(args) == 0
    assert '2 info file(s), 12 images, 6 already done, 6 to compute' in capsys.readouterr().out
    assert len(list((root / 'superpixels').rglob('*.npz'))) == 12  # and the sidecar
    assert (root / 'superpixels' / 'superpixels.json').is_file()
    assert main(args) == 0
    assert '12 images, 12 already done, 0 to compute' in capsys.readouterr().out


def test_required_files_by_kind_through_wrappers(world):
    """mmengine's wrappers, nested as configs nest them (ClassBalancedDataset and the outer
    ConcatDataset lazily: the pretraining dataset has no category ids to balance)."""
    from projects.img2lidar.datasets.required_files import required_files
    data = Config.fromfile(str(PRETRAIN_DATA))
    train = dict(data.train_dataloader.dataset, data_root=str(world),
                 ann_file='nuscenes_infos_pretrain.pkl')
    val = dict(train, ann_file='nuscenes_infos_pretrain_val.pkl')
    differ = ['split', 'scenes']  # the infos' metainfo
    wrapped = DATASETS.build(dict(
        type='ConcatDataset', ignore_keys=differ, lazy_init=True, datasets=[
            dict(type='RepeatDataset', times=3, dataset=dict(
                type='ConcatDataset', ignore_keys=differ, datasets=[val, train])),
            dict(type='ClassBalancedDataset', oversample_thr=0.1, lazy_init=True,
                 dataset=train)]))
    expected = dict(points=[], images=[], superpixels=[])
    for ann in ('nuscenes_infos_pretrain_val.pkl', 'nuscenes_infos_pretrain.pkl'):
        info = _info(world / ann)['data_list'][0]
        expected['points'].append(
            f"{world}/samples/LIDAR_TOP/{info['lidar_points']['lidar_path']}")
        for cam in CAMERAS:
            name = info['images'][cam]['img_path']
            expected['images'].append(f'{world}/samples/{cam}/{name}')
            expected['superpixels'].append(
                f'{world}/superpixels/{cam}/{os.path.splitext(name)[0]}.npz')
    assert required_files(wrapped) == expected


def test_required_files_of_mmdet3d_datasets():
    from projects.img2lidar.datasets.required_files import required_files
    kitti = DATASETS.build(dict(
        type='KittiDataset', data_root=str(KITTI_SAMPLE), ann_file='000008.pkl',
        data_prefix=dict(pts='', img=''), modality=dict(use_lidar=True, use_camera=True),
        pipeline=[dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=4, use_dim=4),
                  dict(type='LoadImageFromFileMono3D')]))
    assert required_files(kitti) == dict(points=[f'{KITTI_SAMPLE}/000008.bin'],
                                         images=[f'{KITTI_SAMPLE}/000008.png'])
    cfg = Config.fromfile(str(REPO_ROOT / 'configs/_base_/datasets/semantickitti_lidarseg.py'))
    seq = f'{SEMANTICKITTI_FIXTURE}/sequences/00'
    kitti_seg = DATASETS.build(dict(cfg.val_dataloader.dataset, data_root=str(
        SEMANTICKITTI_FIXTURE), ann_file='semantickitti_infos.pkl', data_prefix=dict(
            pts='sequences/00/velodyne', pts_semantic_mask='sequences/00/labels')))
    assert required_files(kitti_seg) == dict(points=[f'{seq}/velodyne/000000.bin'],
                                             labels=[f'{seq}/labels/000000.label'])


def _verify_config(root, tmp_path):
    path = tmp_path / 'verify_cfg.py'
    pretrain_cfg(root, tmp_path / 'work').dump(str(path))
    return str(path)


def test_verify_data_reports_a_good_root_fine(root, tmp_path, capsys):
    _maps(root, 'pretrain_val')
    rc = _tool('verify_data').main([_verify_config(root, tmp_path), '--workers', '1'])
    out = capsys.readouterr().out
    print(out)
    assert rc == 0
    for split in ('train', 'val', 'test'):
        for kind, n in (('infos', 1), ('points', 1), ('images', 6), ('superpixels', 6)):
            assert f'{split:<6} {kind:<14} {n:>8} {0:>8} {0:>8}' in out
    assert 'all 28 files fine' in out  # 2 infos + 2 x (1 + 6 + 6); test is val


def test_verify_data_reports_damaged_files_and_fails(root, tmp_path, capsys):
    _maps(root, 'pretrain_val')
    points = root / 'samples' / 'LIDAR_TOP' / _info(
        root / 'nuscenes_infos_pretrain.pkl')['data_list'][0]['lidar_points']['lidar_path']
    size = points.stat().st_size
    with open(points, 'r+b') as f:
        f.truncate(size - 3)
    stem = os.path.splitext(_info(root / 'nuscenes_infos_pretrain_val.pkl')[
        'data_list'][0]['images']['CAM_FRONT_LEFT']['img_path'])[0]
    sp = root / 'superpixels' / 'CAM_FRONT_LEFT' / f'{stem}.npz'
    data = sp.read_bytes()
    sp.write_bytes(data[:len(data) // 2])
    rc = _tool('verify_data').main([_verify_config(root, tmp_path), '--workers', '1',
                                    '--split', 'train', 'val'])
    out = capsys.readouterr().out
    print(out)
    assert rc == 1
    assert f'{"train":<6} {"points":<14} {1:>8} {0:>8} {1:>8}' in out
    assert f'{"val":<6} {"superpixels":<14} {6:>8} {0:>8} {1:>8}' in out
    assert '2 of 28 files are missing or damaged' in out
    assert (f'damaged  points       {points}: size {size - 3} bytes is not a whole number of '
            '5-float32 records (20 bytes)') in out
    assert f'damaged  superpixels  {sp}: ' in out  # and the reader's reason


def test_verify_data_checks_labels_against_their_points(root, tmp_path, capsys):
    sample = _info(root / 'nuscenes_infos_train.pkl')['data_list'][1]
    labels = root / sample['pts_semantic_mask_path']
    points = root / 'samples' / 'LIDAR_TOP' / sample['lidar_points']['lidar_path']
    n = points.stat().st_size // 20  # 5 float32 per point
    assert labels.stat().st_size == n  # uint8 labels
    with open(labels, 'r+b') as f:
        f.truncate(n - 1)
    path = tmp_path / 'finetune_cfg.py'
    finetune_cfg(root, tmp_path / 'work').dump(str(path))
    rc = _tool('verify_data').main([str(path), '--workers', '1', '--split', 'train'])
    out = capsys.readouterr().out
    assert rc == 1
    assert f'{"train":<6} {"labels":<14} {2:>8} {0:>8} {1:>8}' in out
    assert f'damaged  labels       {labels}: {n - 1} labels for the {n} points' in out
