"""Every shipped config parses, its model builds through the registries, and its name tells the
truth about it."""
import glob
import os
import re

import pytest
from mmdet3d.registry import MODELS
from mmengine.config import Config

from conftest import REPO_ROOT, save_tiny_vit

# configs/protocols: evaluation protocols, not model configs (test_evaluate_pretraining.py)
CONFIGS = sorted(p for p in glob.glob(str(REPO_ROOT / 'configs' / '*' / '*.py'))
                 if os.sep + '_base_' + os.sep not in p
                 and not p.endswith(('demo_sizes.py', 'real_data_sizes.py'))
                 and os.sep + 'protocols' + os.sep not in p)
PRETRAIN_DIRS = ('slidr', 'st-slidr', 'relational', 'ppkt', 'similarity')
#: {method}_{student}_{teacher}_{gpus}xb{batch}-{epochs}e_{dataset}.py
PRETRAIN_NAME = re.compile(r'^(?P<method>[a-z]+)_(?P<student>[a-z0-9-]+)_(?P<teacher>[a-z0-9.-]+)_'
                           r'(?P<gpus>\d+)xb(?P<batch>\d+)-(?P<epochs>\d+)e_(?P<dataset>[a-z-]+)'
                           r'\.py$')


@pytest.fixture(scope='module')
def tiny_vits(tmp_path_factory):
    """Local transformers directories for configs whose teacher reads one when built: a tiny
    random model of the config's family (the build is what is tested, not the weights)."""
    paths = {}
    for family in ('dinov2', 'dinov3_vit'):
        paths[family] = tmp_path_factory.mktemp(family)
        save_tiny_vit(family, paths[family])
    return paths


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: os.path.basename(p))
def test_config_builds(path, tiny_vits):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports['imports'] == ['projects.img2lidar']
    if cfg.model.get('teacher', {}).get('type') == 'ViTTeacher':
        family = 'dinov3_vit' if 'dinov3' in cfg.model.teacher.checkpoint else 'dinov2'
        cfg.model.teacher.checkpoint = str(tiny_vits[family])
    if os.sep + 'zero_shot' + os.sep in path:
        # they read a local CLIP directory / text embeddings when built: tests/test_zero_shot.py
        assert cfg.model.type in ('ImageLidarDistiller', 'ZeroShotSegmentor')
        return
    model = MODELS.build(cfg.model)  # weights are not loaded here (no init_weights)
    assert sum(p.numel() for p in model.parameters()) > 1e6
    if cfg.get('train_dataloader'):
        for dataset in _datasets(cfg):
            assert dataset.type in ('ImageLidarPretrainDataset', 'NuScenesLidarSegDataset',
                                    'PandaSetSegDataset', 'SemanticKittiFewShotDataset')


def _datasets(cfg):
    """The training datasets of a config: those of a ConcatDataset, or the one."""
    dataset = cfg.train_dataloader.dataset
    return list(dataset.datasets) if dataset.type == 'ConcatDataset' else [dataset]


@pytest.mark.parametrize('path', [p for p in CONFIGS if os.path.basename(os.path.dirname(p))
                                  in PRETRAIN_DIRS], ids=lambda p: os.path.basename(p))
def test_pretraining_config_names_tell_the_truth(path):
    """Users pick configs by name: the student, the batch per GPU and the epochs it states are
    the ones it trains with."""
    m = PRETRAIN_NAME.match(os.path.basename(path))
    assert m, f'{os.path.basename(path)} does not follow the naming scheme'
    cfg = Config.fromfile(path)
    assert cfg.train_dataloader.batch_size == int(m['batch'])
    assert cfg.train_cfg.max_epochs == int(m['epochs'])
    student = cfg.model.student.type.lower()
    assert m['student'].split('-')[0].rstrip('0123456789') in student
    datasets = _datasets(cfg)
    assert all(d.type == 'ImageLidarPretrainDataset' for d in datasets)
    # nuscenes, or nuscenes-pandaset for the two in one ConcatDataset, in that order
    names = ['pandaset' if 'pandaset' in d.ann_file else 'nuscenes' for d in datasets]
    assert m['dataset'] == '-'.join(names)


def test_finetuning_reads_the_checkpoint_the_documented_pretraining_writes():
    """The documented pretraining command (docs/get_started.md) writes, in mmengine's default
    work dir, the checkpoint the docs name and the finetuning and probing configs of its student
    load by default; those of the other students name an existing pretraining config's last
    epoch the same way. (tests/test_doc_commands.py runs the commands themselves.)"""
    doc = (REPO_ROOT / 'docs' / 'get_started.md').read_text()
    m = re.search(r'tools/train\.py (configs/st-slidr/\S+\.py)\n```\n\nThis writes `(\S+\.pth)`',
                  doc)
    assert m, 'docs/get_started.md shows no pretraining command with its output'
    config, out = m.groups()
    epochs = Config.fromfile(str(REPO_ROOT / config)).train_cfg.max_epochs
    assert out == f'work_dirs/{os.path.splitext(os.path.basename(config))[0]}/epoch_{epochs}.pth'
    for folder in ('finetune', 'linear_probe'):
        for path in glob.glob(str(REPO_ROOT / 'configs' / folder / '*.py')):
            ckpt = Config.fromfile(path).model.init_cfg.checkpoint
            name = re.fullmatch(r'work_dirs/(\S+)/epoch_(\d+)\.pth', ckpt)
            assert name, (path, ckpt)
            pretrain = glob.glob(str(REPO_ROOT / 'configs' / '*' / (name.group(1) + '.py')))
            assert pretrain, f'{path}: no pretraining config writes {ckpt}'
            assert Config.fromfile(pretrain[0]).train_cfg.max_epochs == int(name.group(2))
            if os.path.basename(path).startswith('minkunet34_'):
                assert ckpt == out, path


#: configs/README.md's words for what a config holds (the table's vocabulary)
_LOSS_WORDS = {'SuperpixelInfoNCELoss': 'SLidR InfoNCE', 'RelationalLoss': 'relational',
               'PPKTLoss': 'PPKT', 'SimilarityLoss': 'similarity'}
_TEACHER_WORDS = {'ResNet': 'ResNet-50', 'DilatedMobileNetV2': 'MobileNetV2 (ImageNet)'}


def _described(cfg) -> dict:
    """What configs/README.md's pretraining tables state of a config, read from the config."""
    model = cfg.model
    student = model.student
    if student.type == 'Cylinder3DStudent':
        student_word = 'Cylinder3D'
    else:
        width = student.backbone.base_channels
        student_word = 'MinkUNet-34' if width == 32 else f'MinkUNet w{width}'
        if model.data_preprocessor.voxel_type == 'minkunet_cylindrical':
            student_word += ', cylindrical voxels'
    teacher = model.teacher
    if teacher.type == 'FrozenImageTeacher':
        teacher_word = _TEACHER_WORDS[teacher.backbone.type.split('.')[-1]]
    elif teacher.type == 'CLIPImageTeacher':
        teacher_word = 'CLIP ViT-B/16'
    else:  # ViTTeacher: the family and size from the checkpoint directory's name
        name = os.path.basename(teacher.checkpoint.rstrip('/'))
        family, size = re.match(r'(dinov[23])-vit([bl]\d+)', name).groups()
        teacher_word = f'{family.upper().replace("DINOV", "DINOv")} ViT-{size[0].upper()}/{size[1:]}'
    losses = []
    for loss in model.losses.values():
        if loss.type == 'SemanticallyTolerantLoss':
            losses.append('ST + CB' if loss.get('balancing') else 'ST')
        else:
            losses.append(_LOSS_WORDS[loss.type])
    dataset = cfg.train_dataloader.dataset
    first = dataset.datasets[0] if dataset.type == 'ConcatDataset' else dataset
    crop = next(t for t in first.pipeline if t['type'] == 'PairedRandomResizedCrop')['size']
    optimizer = cfg.optim_wrapper.optimizer
    return {
        'losses': ' + '.join(losses), 'student': student_word, 'teacher': teacher_word,
        'crops': 'x'.join(str(s) for s in crop), 'batch': str(cfg.train_dataloader.batch_size),
        'epochs': str(cfg.train_cfg.max_epochs),
        'optimiser, lr': f'{optimizer.type} {optimizer.lr:g}',
        'validation every': str(cfg.train_cfg.val_interval) if cfg.get('val_dataloader') else '-'}


def test_configs_readme_tables_state_what_the_configs_hold():
    """Every row of configs/README.md's pretraining tables is checked against its config, and
    every pretraining config has a row."""
    text = (REPO_ROOT / 'configs' / 'README.md').read_text()
    header = None
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')] if line.startswith('|') \
            else None
        if cells and cells[0] == 'config':
            header = cells
        elif cells and header and cells[0].startswith('['):
            path = re.match(r'\[[^\]]+\]\(([^)]+)\)', cells[0]).group(1)
            rows[path] = dict(zip(header[1:], cells[1:]))
        elif not cells:
            header = None
    pretraining = [os.path.relpath(p, REPO_ROOT / 'configs') for p in CONFIGS
                   if Config.fromfile(p).model.type == 'ImageLidarDistiller']
    assert sorted(rows) == sorted(pretraining)
    for path, stated in rows.items():
        cfg = Config.fromfile(str(REPO_ROOT / 'configs' / path))
        assert stated == _described(cfg), path
