"""tools/test.py with mmdet3d 1.4's arguments: --show-dir / --show (bird's-eye views of
labels, BEVSegVisualizationHook), --tta (Seg3DTTAModel on the segmentation bases'
tta_pipeline), --task choices and the refusals, on a tiny segmentor from the shipped
SemanticKITTI finetuning config and the SemanticKITTI fixture."""
import ast
import copy
import glob
import importlib.util
import os
import pickle
import shutil

import cv2
import numpy as np
import pytest
import torch
from mmdet3d.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from conftest import REPO_ROOT, SEMANTICKITTI_FIXTURE, finetune_config


def _load_tool():
    """tools/test.py as a module (its name would clash with Python's own ``test`` package)."""
    spec = importlib.util.spec_from_file_location('tools_test', REPO_ROOT / 'tools' / 'test.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


test_tool = _load_tool()

MINKUNET_CONFIG = 'configs/finetune/minkunet34_2xb8-100e_semantickitti-1pct.py'
CYLINDER_CONFIG = 'configs/finetune/cylinder3d_2xb8-100e_semantickitti-1pct.py'
#: the small MinkUNet of tests/test_finetune_tools.py, as command-line overrides
MINKUNET_SIZES = ['model.backbone.base_channels=16',
                  'model.backbone.encoder_channels=[16,32,64,128]',
                  'model.backbone.encoder_blocks=[1,1,1,1]',
                  'model.backbone.decoder_channels=[128,64,48,48]',
                  'model.backbone.decoder_blocks=[1,1,1,1]', 'model.decode_head.channels=48']
CYLINDER_SIZES = ['model.backbone.base_channels=8', 'model.decode_head.channels=32']
#: mmdet3d 1.4's tools/test.py options, as its parse_args declares them
MMDET3D_OPTIONS = ['--work-dir', '--ceph', '--show', '--show-dir', '--score-thr', '--task',
                   '--wait-time', '--cfg-options', '--launcher', '--tta', '--local_rank',
                   '--local-rank']
MMDET3D_TASKS = ['mono_det', 'multi-view_det', 'lidar_det', 'lidar_seg', 'multi-modality_det']
#: semantic-kitti.yaml's learning map for the raw labels of the fixture (0 and 52 are ignored)
FIXTURE_CLASS = {50: 12, 70: 14, 71: 15, 80: 17}
SEG_TYPES = ('MinkUNet', 'Cylinder3D', 'LinearProbeMinkUNet', 'LinearProbeCylinder3D',
             'ZeroShotSegmentor')
#: every shipped segmentor config (finetune, linear probe, zero-shot, demo)
SEG_CONFIGS = sorted(
    p for p in glob.glob(str(REPO_ROOT / 'configs' / '*' / '*.py'))
    if os.sep + '_base_' + os.sep not in p and os.sep + 'protocols' + os.sep not in p
    and not p.endswith('_sizes.py') and Config.fromfile(p).model.get('type') in SEG_TYPES)


def _two_scan_root(root):
    """A SemanticKITTI data root with two scans: the fixture's and its mirror image (x -> -x),
    both with the fixture's labels, and an info file listing them."""
    src = SEMANTICKITTI_FIXTURE / 'sequences' / '00'
    for sub in ('velodyne', 'labels'):
        (root / 'sequences' / '00' / sub).mkdir(parents=True)
    points = np.fromfile(src / 'velodyne' / '000000.bin', dtype=np.float32).reshape(-1, 4)
    mirrored = points.copy()
    mirrored[:, 0] *= -1
    for i, cloud in enumerate((points, mirrored)):
        cloud.tofile(root / 'sequences' / '00' / 'velodyne' / f'00000{i}.bin')
        shutil.copy(src / 'labels' / '000000.label',
                    root / 'sequences' / '00' / 'labels' / f'00000{i}.label')
    data_list = [dict(sample_id=i, lidar_points=dict(num_pts_feats=4, lidar_path=f'00000{i}.bin'),
                      pts_semantic_mask_path=f'00000{i}.label') for i in range(2)]
    with open(root / 'infos.pkl', 'wb') as f:
        pickle.dump(dict(metainfo=dict(DATASET='SemanticKITTI'), data_list=data_list), f)
    return root, [points, mirrored]


def _tiny_checkpoint(config, sizes, path, model_type=None):
    """A random-weight checkpoint of ``config``'s segmentor made small by ``sizes``."""
    cfg = Config.fromfile(str(REPO_ROOT / config))
    for option in sizes:
        key, value = option.split('=', 1)
        cfg.merge_from_dict({key: ast.literal_eval(value)})
    if model_type is not None:
        cfg.model.type = model_type
    cfg.model.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return model


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """The data root of two scans, a tiny MinkUNet checkpoint of the shipped SemanticKITTI
    config and the tool's arguments that test it there."""
    tmp = tmp_path_factory.mktemp('test_tool')
    root, clouds = _two_scan_root(tmp / 'data')
    ckpt = tmp / 'tiny.pth'
    _tiny_checkpoint(MINKUNET_CONFIG, MINKUNET_SIZES, ckpt)
    data = [f'test_dataloader.dataset.{k}' for k in (
        f'data_root={root}', 'ann_file=infos.pkl', 'data_prefix.pts=sequences/00/velodyne',
        'data_prefix.pts_semantic_mask=sequences/00/labels')]
    options = ['--cfg-options', *MINKUNET_SIZES, *data, 'model.init_cfg=None',
               'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']
    return dict(tmp=tmp, root=root, clouds=clouds, ckpt=ckpt,
                args=lambda work, *extra: [MINKUNET_CONFIG, str(ckpt), '--work-dir', str(work),
                                           *extra, *options])


# -- arguments ----------------------------------------------------------------------------------
def test_help_lists_mmdet3d_arguments(capsys):
    with pytest.raises(SystemExit) as exit_info:
        test_tool.parse_args(['--help'])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    for option in MMDET3D_OPTIONS + ['config', 'checkpoint']:
        assert option in usage, option
    for task in MMDET3D_TASKS:
        assert task in usage, task
    args = test_tool.parse_args(['c.py', 'k.pth'])  # mmdet3d's defaults
    assert (args.score_thr, args.wait_time, args.task, args.launcher, args.show, args.show_dir,
            args.tta, args.ceph, args.local_rank) == (0.1, 2, None, 'none', False, None, False,
                                                      False, 0)


def test_invalid_task_is_refused_by_argparse(capsys):
    with pytest.raises(SystemExit) as exit_info:
        test_tool.parse_args(['c.py', 'k.pth', '--task', 'lidar_segmentation'])
    assert exit_info.value.code == 2
    assert "invalid choice: 'lidar_segmentation'" in capsys.readouterr().err


def test_refusals_come_before_the_config_is_read(tmp_path, monkeypatch):
    """--show without a display, --show/--show-dir without --task and --ceph stop at once with
    a message saying why (the config file does not even exist)."""
    missing = str(tmp_path / 'no_such_config.py')
    monkeypatch.delenv('DISPLAY', raising=False)
    monkeypatch.delenv('WAYLAND_DISPLAY', raising=False)
    with pytest.raises(SystemExit) as exit_info:
        test_tool.main([missing, 'k.pth', '--show', '--task', 'lidar_seg'])
    message = str(exit_info.value.code)
    assert 'no display' in message and '--show-dir DIR' in message, message
    with pytest.raises(SystemExit, match='--show and --show-dir need --task'):
        test_tool.main([missing, 'k.pth', '--show-dir', str(tmp_path / 'pics')])
    with pytest.raises(SystemExit, match='--ceph is not supported'):
        test_tool.main([missing, 'k.pth', '--ceph'])


def test_show_needs_an_opencv_with_a_gui(monkeypatch):
    """With a display, --show --task lidar_seg shows the bird's-eye views with OpenCV: refused
    on a headless OpenCV build (as this project's set-up installs), set up otherwise."""
    monkeypatch.setenv('DISPLAY', ':0')
    args = test_tool.parse_args([MINKUNET_CONFIG, 'k.pth', '--show', '--task', 'lidar_seg',
                                 '--wait-time', '0.5'])
    test_tool.check_arguments(args)
    cfg = Config.fromfile(str(REPO_ROOT / MINKUNET_CONFIG))
    monkeypatch.setattr(cv2, 'getBuildInformation', lambda: '  GUI:     NONE\n')
    with pytest.raises(SystemExit, match='headless build'):
        test_tool.trigger_visualization_hook(cfg, args)
    monkeypatch.setattr(cv2, 'getBuildInformation', lambda: '  GUI:     GTK3\n')
    test_tool.trigger_visualization_hook(cfg, args)
    assert cfg.default_hooks.visualization == dict(
        type='BEVSegVisualizationHook', draw=True, vis_task='lidar_seg', score_thr=0.1,
        show=True, wait_time=0.5)


def test_detection_tasks_need_mmdet3d_hook_in_the_config(tmp_path):
    cfg = Config.fromfile(str(REPO_ROOT / MINKUNET_CONFIG))
    args = test_tool.parse_args([MINKUNET_CONFIG, 'k.pth', '--show-dir', 'x', '--task',
                                 'lidar_det'])
    with pytest.raises(SystemExit, match="Det3DVisualizationHook, which the config must hold"):
        test_tool.trigger_visualization_hook(cfg, args)
    # mmdet3d's hook draws point clouds with open3d, which this set-up does not install
    cfg.default_hooks.visualization = dict(type='Det3DVisualizationHook')
    with pytest.raises(SystemExit, match='open3d, which is not installed'):
        test_tool.trigger_visualization_hook(cfg, args)
    args.task = 'mono_det'  # images: handed to mmdet3d's hook, with mmdet3d's keys
    test_tool.trigger_visualization_hook(cfg, args)
    assert cfg.default_hooks.visualization == dict(
        type='Det3DVisualizationHook', draw=True, vis_task='mono_det', score_thr=0.1,
        test_out_dir='x')


@pytest.mark.parametrize('config', SEG_CONFIGS, ids=os.path.basename)
def test_every_segmentation_config_takes_show_dir_and_tta(config):
    """Every shipped segmentor config gets the bird's-eye-view hook for --show-dir --task
    lidar_seg, and a tta_pipeline made of its own test loading steps and 36 views whose first
    is the identity."""
    cfg = Config.fromfile(config)
    test_pipeline = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
    model = copy.deepcopy(cfg.model)
    args = test_tool.parse_args([config, 'k.pth', '--show-dir', 'pics', '--task', 'lidar_seg',
                                 '--tta'])
    test_tool.trigger_visualization_hook(cfg, args)
    assert cfg.default_hooks.visualization == dict(
        type='BEVSegVisualizationHook', draw=True, vis_task='lidar_seg', score_thr=0.1,
        test_out_dir='pics')
    assert cfg.default_hooks.checkpoint.type == 'CheckpointHook'  # the others are kept
    test_tool.use_tta(cfg, config)
    assert cfg.model == dict(type='Seg3DTTAModel', module=model)
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert pipeline[:-1] == test_pipeline[:-1]
    views = pipeline[-1]
    assert views.type == 'TestTimeAug' and views.transforms[-1] == [test_pipeline[-1]]
    assert len(views.transforms[0]) * len(views.transforms[1]) == 36
    flip, rot_scale = views.transforms[0][0], views.transforms[1][0]
    assert (flip.flip_ratio_bev_horizontal, flip.flip_ratio_bev_vertical) == (0, 0)
    assert (rot_scale.rot_range, rot_scale.scale_ratio_range) == ([0, 0], [1, 1])


def test_tta_without_tta_model_names_the_config(tmp_path):
    config = finetune_config(tmp_path / 'no_tta.py', SEMANTICKITTI_FIXTURE, tmp_path / 'x.pth')
    with pytest.raises(SystemExit) as exit_info:
        test_tool.main([str(config), 'k.pth', '--tta', '--work-dir', str(tmp_path / 'w')])
    message = str(exit_info.value.code)
    assert str(config) in message and 'no tta_model and no tta_pipeline' in message, message


def test_tta_refuses_zero_shot_label_maps():
    config = str(REPO_ROOT / 'configs/zero_shot/zeroshot_minkunet34_clip-vitb16_nuscenes-'
                 'lidarseg.py')
    cfg = Config.fromfile(config)
    cfg.model.label_offset = 1
    with pytest.raises(SystemExit, match='label_map / label_offset'):
        test_tool.use_tta(cfg, config)


# -- runs ---------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def pictures(tiny_run):
    """The tool's metrics without and with --show-dir, and the show dir."""
    tmp = tiny_run['tmp']
    plain = test_tool.main(tiny_run['args'](tmp / 'plain'))
    drawn = test_tool.main(tiny_run['args'](tmp / 'drawn', '--show-dir', str(tmp / 'pictures'),
                                            '--task', 'lidar_seg'))
    return plain, drawn, tmp / 'pictures'


def test_show_dir_writes_a_picture_per_sample_and_keeps_the_metrics(tiny_run, pictures):
    plain, drawn, show_dir = pictures
    assert 'miou' in plain and plain.keys() == drawn.keys()
    np.testing.assert_equal(plain, drawn)  # every value, NaN (classes absent) included
    names = sorted(os.listdir(show_dir))
    assert names == ['sequences_00_velodyne_000000.png', 'sequences_00_velodyne_000001.png']
    palette = np.array(DATASETS.get('SemanticKittiFewShotDataset').METAINFO['palette'])
    raw = np.fromfile(SEMANTICKITTI_FIXTURE / 'sequences/00/labels/000000.label',
                      dtype=np.uint32) & 0xFFFF
    for name, points in zip(names, tiny_run['clouds']):
        image = cv2.imread(str(show_dir / name))
        assert image.shape == (400, 2 * 408 + 190, 3)
        gt_panel = image[:, :400].reshape(-1, 3)
        colours = {tuple(c) for c in np.unique(gt_panel, axis=0)} - {(0, 0, 0), (255, 255, 255)}
        # the labelled points inside the 80 m x 80 m view, by hand: their classes' colours
        inside = (np.abs(points[:, 0]) < 40) & (np.abs(points[:, 1]) < 40)
        classes = {FIXTURE_CLASS[r] for r in raw[inside] if r in FIXTURE_CLASS}
        expected = {tuple(int(v) for v in palette[c][::-1]) for c in classes}
        if np.isin(raw[inside], [0, 52]).any():
            expected.add((40, 40, 40))  # the ignored points' grey
        assert len(classes) >= 2 and colours == expected, (colours, expected)
    first, second = (cv2.imread(str(show_dir / n))[:, :400] for n in names)
    assert not np.array_equal(first, second)  # the mirrored scan: its own picture


def test_tta_through_the_tool(tiny_run, pictures, tmp_path):
    """--tta on the shipped config's tta_pipeline (36 views) gives SegMetric's result, and
    --show-dir draws the points of the first view, the identity: the same ground-truth
    panels as without --tta."""
    metrics = test_tool.main(tiny_run['args'](tmp_path / 'tta', '--tta', '--show-dir',
                                              str(tmp_path / 'pics'), '--task', 'lidar_seg'))
    assert {'miou', 'acc', 'acc_cls'} <= set(metrics)
    assert 0 <= metrics['miou'] <= 1
    names = sorted(os.listdir(tmp_path / 'pics'))
    assert names == sorted(os.listdir(pictures[2]))
    for name in names:
        with_tta = cv2.imread(str(tmp_path / 'pics' / name))
        without = cv2.imread(str(pictures[2] / name))
        assert np.array_equal(with_tta[:, :400], without[:, :400]), name


def _zero_shot_model(tmp_path):
    base = Config.fromfile(str(REPO_ROOT / MINKUNET_CONFIG))
    torch.save(torch.nn.functional.normalize(torch.randn(19, 16), dim=1), tmp_path / 'text.pth')
    backbone = dict(base.model.backbone, base_channels=8, encoder_channels=[8, 16, 16, 32],
                    encoder_blocks=[1, 1, 1, 1], decoder_channels=[32, 16, 16, 16],
                    decoder_blocks=[1, 1, 1, 1])
    return MODELS.build(dict(type='ZeroShotSegmentor',
                             data_preprocessor=base.model.data_preprocessor,
                             student=dict(type='MinkUNetStudent', out_channels=16,
                                          backbone=backbone),
                             text_embeddings=str(tmp_path / 'text.pth')))


@pytest.mark.parametrize('model_type', SEG_TYPES)
def test_seg3d_tta_model_with_the_project_segmentors(model_type, tmp_path):
    """Seg3DTTAModel around each segmentor (and PointVoxelDataPreprocessor) on the 36 views of
    the SemanticKITTI base's tta_pipeline: its merged prediction is the argmax of the mean of
    the softmaxes of the views, each predicted alone; the first view is the plain test
    sample."""
    torch.manual_seed(0)
    if model_type == 'ZeroShotSegmentor':
        model = _zero_shot_model(tmp_path)
    elif 'Cylinder3D' in model_type:
        model = _tiny_checkpoint(CYLINDER_CONFIG, CYLINDER_SIZES, tmp_path / 'c.pth',
                                 model_type)
    else:
        model = _tiny_checkpoint(MINKUNET_CONFIG, MINKUNET_SIZES, tmp_path / 'm.pth',
                                 model_type)
    model.eval()
    cfg = Config.fromfile(str(REPO_ROOT / MINKUNET_CONFIG))
    dataset = dict(cfg.test_dataloader.dataset, data_root=str(SEMANTICKITTI_FIXTURE),
                   ann_file='semantickitti_infos.pkl',
                   data_prefix=dict(pts='sequences/00/velodyne',
                                    pts_semantic_mask='sequences/00/labels'))
    views = DATASETS.build(dict(dataset, pipeline=cfg.tta_pipeline))[0]
    plain = DATASETS.build(dataset)[0]
    assert len(views['inputs']) == 36
    assert torch.equal(views['inputs'][0]['points'], plain['inputs']['points'])
    scores = []
    with torch.no_grad():
        for inputs, sample in zip(views['inputs'], views['data_samples']):
            out = model.test_step(pseudo_collate([dict(inputs=inputs,
                                                       data_samples=copy.deepcopy(sample))]))
            scores.append(out[0].pts_seg_logits.pts_seg_logits.softmax(dim=0))
        expected = torch.stack(scores).mean(0).argmax(0)
        tta = MODELS.build(dict(type='Seg3DTTAModel', module=model))
        merged = tta.test_step(pseudo_collate([copy.deepcopy(views)]))
    assert len(merged) == 1
    assert torch.equal(merged[0].pred_pts_seg.pts_semantic_mask, expected)
    assert expected.shape == (50, )
