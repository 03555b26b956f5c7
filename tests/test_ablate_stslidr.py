"""tools/ablate_stslidr.py: the methods it pretrains, the commands it runs, the diagnostics it
collects (no training here: the commands are listed with --dry-run)."""
import importlib.util
import json

import pytest
from mmdet3d.registry import MODELS
from mmengine.config import Config

from conftest import REPO_ROOT


@pytest.fixture(scope='module')
def ablate():
    spec = importlib.util.spec_from_file_location('ablate_stslidr',
                                                  REPO_ROOT / 'tools' / 'ablate_stslidr.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('method,losses,pooling', [
    ('slidr', {'loss_slidr': ('SuperpixelInfoNCELoss', None, None)}, 'area'),
    ('st', {'loss_st': ('SemanticallyTolerantLoss', 'quantile', None)}, 'area'),
    ('cb', {'loss_cb': ('SuperpixelInfoNCELoss', None, 0.5)}, 'area'),
    ('st_cb', {'loss_st': ('SemanticallyTolerantLoss', 'quantile', 0.5)}, 'area'),
    ('st_cb_nearest', {'loss_st': ('SemanticallyTolerantLoss', 'quantile', 0.5)}, 'nearest'),
    ('st_cb_adaptive', {'loss_st': ('SemanticallyTolerantLoss', 'quantile', 'q0.8')}, 'area'),
])
def test_generated_configs_are_the_demo_config_with_the_method_s_losses(
        ablate, tmp_path, method, losses, pooling):
    path = tmp_path / f'{method}.py'
    path.write_text(ablate.method_config(method, 'imagenet', 1))
    cfg = Config.fromfile(str(path))
    demo = Config.fromfile(ablate.BASE_CONFIG)
    assert cfg.model.teacher == demo.model.teacher  # everything but the losses is the demo's
    assert cfg.train_cfg == demo.train_cfg and cfg.optim_wrapper == demo.optim_wrapper
    assert cfg.model.get('teacher_pooling', 'area') == pooling
    assert sorted(cfg.model.losses) == sorted(losses)
    model = MODELS.build(cfg.model)
    for name, (kind, tolerance, threshold) in losses.items():
        head = model.losses[name]
        assert type(head).__name__ == kind
        assert head.tau == 0.07 and head.diagnostics_interval == 1
        assert getattr(head, 'tolerance', None) == tolerance
        if tolerance:
            assert head.min_quantile == 0.01 and head.masked_negatives == 'zero_logit'
        balancing = head.balancing
        if threshold is None:
            assert balancing is None
        elif threshold == 'q0.8':
            assert balancing.threshold_quantile == 0.8
        else:
            assert balancing.threshold == threshold and balancing.threshold_quantile is None
    random = tmp_path / 'random.py'
    random.write_text(ablate.method_config(method, 'random', 0))
    cfg = Config.fromfile(str(random))
    assert cfg.model.teacher.checkpoint is None
    assert all('diagnostics_interval' not in loss for loss in cfg.model.losses.values())


def test_dry_run_lists_one_locked_command_per_run(ablate, tmp_path, capsys):
    assert ablate.main(['--dry-run', '--methods', 'slidr', 'st_cb', '--seeds', '2',
                        '--work-dir', str(tmp_path), '--lock', '/tmp/some.lock']) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith('[ablate] ')
             and ': ' in l and not l.startswith('[ablate] total')]
    names = [l.split(': ', 1)[0][len('[ablate] '):] for l in lines]
    assert names == ['pretrain slidr seed0', 'pretrain slidr seed1', 'pretrain st_cb seed0',
                     'pretrain st_cb seed1', 'evaluate slidr', 'evaluate st_cb', 'table']
    commands = [l.split(': ', 1)[1] for l in lines]
    assert all(c.startswith('flock /tmp/some.lock ') for c in commands[:-1])
    assert 'randomness.seed=1' in commands[1]
    evaluate = commands[5]
    assert f'{tmp_path}/imagenet/st_cb/seed0/epoch_6.pth {tmp_path}/imagenet/st_cb/seed1/' \
        'epoch_6.pth --label ST + CB --protocol demo --seeds 1' in evaluate
    assert '--paired-with SLidR' in commands[-1]


def test_diagnostics_are_collected_from_the_run_s_scalars(ablate, tmp_path):
    rows = [dict(epoch=1, iter=5, loss=1.0, **{'diag/st/cos_q50': 0.6, 'diag/st/cb_ess': 0.5}),
            dict(epoch=1, iter=10, loss=1.0, **{'diag/st/cos_q50': 0.8}),
            dict(epoch=2, iter=15, loss=1.0, **{'diag/st/cos_q50': 0.7, 'diag/st/cb_ess': 0.3}),
            dict(epoch=2, iter=16, lr=0.1)]
    old = tmp_path / 'seed0' / '20260101_000000' / 'vis_data'
    new = tmp_path / 'seed0' / '20260102_000000' / 'vis_data'
    for folder, content in ((old, [dict(epoch=1, **{'diag/st/cos_q50': 9.0})]), (new, rows)):
        folder.mkdir(parents=True)
        (folder / 'scalars.json').write_text('\n'.join(json.dumps(r) for r in content))
    got = ablate.collect_diagnostics(str(tmp_path / 'seed0'))
    assert got['run'] == pytest.approx({'cos_q50': 0.7, 'cb_ess': 0.4})
    assert got['last_epoch'] == pytest.approx({'cos_q50': 0.7, 'cb_ess': 0.3})
    text = ablate.diagnostics_markdown({'st_cb': [got, got]}, 'imagenet')
    row = [l for l in text.splitlines() if l.startswith('| ST + CB |')][0]
    assert row.split(' | ')[1:4] == ['2', '-', '-'] and '0.700' in row and '0.400' in row
    assert ablate.collect_diagnostics(str(tmp_path / 'missing')) == {'run': {}, 'last_epoch': {}}
