"""tools/publish_backbone.py on a real (small) pretraining checkpoint: the published file holds
the student only, is named after its own sha256, and loads into mmdet3d's MinkUNet segmentor
(the shipped SemanticKITTI finetune config) both ways a finetuning config can load it."""
import hashlib
import importlib.util
import re
import sys

import pytest
import torch
from mmdet3d.registry import MODELS
from mmengine.config import Config

from conftest import (REPO_ROOT, SMALL_MINKUNET, ST_CONFIG, run_tool, small_pretrain_cfg,
                      train_in_process)

SEGMENTOR = REPO_ROOT / 'configs/finetune/minkunet34_2xb8-100e_semantickitti-1pct.py'
TOOL = 'tools/publish_backbone.py'


@pytest.fixture(scope='module')
def pretraining_checkpoint(nuscenes_root, tmp_path_factory):
    """What tools/train.py writes for the ST-SLidR config (small sizes, one iteration): the
    student, projection, teacher, 2D head, optimizer, message hub and schedulers."""
    work = tmp_path_factory.mktemp('pretrain')
    train_in_process(small_pretrain_cfg(str(ST_CONFIG.relative_to(REPO_ROOT)), nuscenes_root,
                                        work, iters=1))
    return work / 'iter_1.pth'


def segmentor(init: str, checkpoint: str):
    """The shipped MinkUNet segmentor at the pretraining's small sizes, initialised from
    ``checkpoint`` by PretrainedStudent (``init='student'``) or by mmengine's Pretrained init on
    the backbone (``init='prefix'``)."""
    cfg = Config.fromfile(str(SEGMENTOR))
    cfg.model.backbone.update(SMALL_MINKUNET)
    cfg.model.decode_head.channels = SMALL_MINKUNET['decoder_channels'][-1]
    if init == 'student':
        cfg.model.init_cfg = dict(type='PretrainedStudent', checkpoint=checkpoint)
    else:
        cfg.model.init_cfg = None
        cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=checkpoint,
                                           prefix='backbone.')
    return MODELS.build(cfg.model)


def test_published_student_loads_into_minkunet(pretraining_checkpoint, tmp_path):
    source = torch.load(pretraining_checkpoint, map_location='cpu')
    assert {'optimizer', 'message_hub', 'param_schedulers'} <= set(source)
    assert any(k.startswith('teacher.') for k in source['state_dict'])
    student = {k: v for k, v in source['state_dict'].items() if k.startswith('backbone.')}

    out = run_tool([sys.executable, TOOL, str(pretraining_checkpoint),
                    str(tmp_path / 'stslidr_minkunet.pth')])
    path = out.stdout.strip().splitlines()[-1]
    match = re.fullmatch(re.escape(str(tmp_path / 'stslidr_minkunet')) + r'-([0-9a-f]{8})\.pth',
                         path)
    assert match, path
    data = open(path, 'rb').read()
    assert hashlib.sha256(data).hexdigest()[:8] == match.group(1)
    # the student's tensors and a small meta, nothing else: well under half of the input, which
    # also holds the teacher, the head and the optimizer's momentum of every student weight
    student_bytes = sum(v.numel() * v.element_size() for v in student.values())
    assert student_bytes < len(data) < student_bytes + 100_000
    assert len(data) < 0.5 * pretraining_checkpoint.stat().st_size

    published = torch.load(path, map_location='cpu', weights_only=True)
    assert set(published) == {'state_dict', 'meta'}
    assert set(published['state_dict']) == set(student)  # no teacher, head, projection key
    meta = published['meta']
    assert meta['source_sha256'] == hashlib.sha256(
        pretraining_checkpoint.read_bytes()).hexdigest()
    assert meta['config'] == ST_CONFIG.stem
    assert (meta['epoch'], meta['iter']) == (source['meta']['epoch'], 1)
    assert meta['mmengine_version'] and meta['mmdet3d_version'] == '1.4.0'

    for init in ('student', 'prefix'):
        model = segmentor(init, path)
        before = model.backbone.state_dict()
        assert any(not torch.equal(before[k[len('backbone.'):]], v)
                   for k, v in student.items() if v.is_floating_point())  # random before
        model.init_weights()
        loaded = model.backbone.state_dict()
        assert set(loaded) == {k[len('backbone.'):] for k in student}
        for key, value in student.items():
            assert torch.equal(loaded[key[len('backbone.'):]], value), (init, key)


def test_checkpoint_without_student_is_refused_naming_it(tmp_path):
    spec = importlib.util.spec_from_file_location('publish_backbone', REPO_ROOT / TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    ckpt = tmp_path / 'teacher_only.pth'
    torch.save({'state_dict': {'teacher.backbone.conv1.weight': torch.zeros(2)}, 'meta': {}},
               ckpt)
    with pytest.raises(ValueError, match=re.escape(f"{ckpt}: no student weights") +
                       r".*top-level names \['teacher'\]"):
        tool.publish_backbone(str(ckpt), str(tmp_path / 'out.pth'))
    assert not list(tmp_path.glob('out*'))
