"""A pretraining run killed with SIGKILL in the middle of an epoch and restarted with
``tools/train.py --resume`` ends like the uninterrupted run: same iterations, learning rates,
checkpoints, losses and weights (the pipeline is deterministic, the sampler shuffles)."""
import signal
import sys
from pathlib import Path

import torch

from conftest import (ST_CONFIG, REPO_ROOT, deterministic_pretrain_pipeline, read_scalars,
                      run_tool, small_pretrain_overrides, values, write_info)
from mmengine.config import Config

PYTHON = sys.executable
ITERS_PER_EPOCH = 4
EPOCHS = 2
KILL_AT = 3  # the third iteration of the first epoch: after the iteration-2 checkpoint

KILL_HOOK = '''
import os
import signal

from mmdet3d.registry import HOOKS
from mmengine.hooks import Hook


@HOOKS.register_module()
class KillAtIteration(Hook):
    """SIGKILLs its own process after iteration $KILL_AT_ITER (1-based) when that is set."""

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == int(os.environ.get('KILL_AT_ITER', '0')):
            os.kill(os.getpid(), signal.SIGKILL)
'''


def _config(tmp_path: Path, root: Path) -> Path:
    """Four different samples (the sample with 6, 5, 4 and 3 of its cameras), batch 1, two
    epochs, a per-iteration cosine learning rate and a checkpoint every 2 iterations."""

    def vary(info):
        for i, entry in enumerate(info['data_list']):
            entry['images'] = dict(list(entry['images'].items())[:6 - i])
            entry['token'] = f"{entry['token']}-{i}"

    ann = write_info(tmp_path / 'four.pkl', root, copies=ITERS_PER_EPOCH, edit=vary)
    cfg = Config.fromfile(str(ST_CONFIG))
    small_pretrain_overrides(cfg)
    (tmp_path / 'kill_hook.py').write_text(KILL_HOOK)
    path = tmp_path / 'resume.py'
    path.write_text(f'''
_base_ = ['{ST_CONFIG}']
custom_imports = dict(imports=['projects.img2lidar', 'kill_hook'], allow_failed_imports=False)
model = dict(
    student=dict(backbone={cfg.model.student.backbone.to_dict()!r}),
    teacher=dict(checkpoint=None, backbone={cfg.model.teacher.backbone.to_dict()!r}),
    image_head=dict(in_channels={cfg.model.image_head.in_channels}))
train_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(data_root='{root}', ann_file='{ann}', cameras=None,
                 data_prefix=dict(_delete_=True, pts='', img='', sp='superpixels'),
                 pipeline={deterministic_pretrain_pipeline()!r}))
val_dataloader = None
val_cfg = None
val_evaluator = None
train_cfg = dict(max_epochs={EPOCHS}, val_interval={EPOCHS + 1})
param_scheduler = [dict(type='CosineAnnealingLR', T_max={EPOCHS}, by_epoch=True,
                        convert_to_iter_based=True, eta_min=0.001)]
optim_wrapper = dict(optimizer=dict(lr=0.05))
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(by_epoch=False, interval=2, max_keep_ckpts=10))
custom_hooks = [dict(type='KillAtIteration')]
log_processor = dict(window_size=1, by_epoch=True)
randomness = dict(seed=0)
''')
    return path


def _train(cfg: Path, work: Path, *extra: str, kill: bool = False):
    env = dict(PYTHONPATH=str(cfg.parent))
    cmd = [PYTHON, 'tools/train.py', str(cfg), '--work-dir', str(work), *extra]
    if not kill:
        return run_tool(cmd, env=env)
    import os
    import subprocess
    res = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
                         env=dict(os.environ, OMP_NUM_THREADS='1', KILL_AT_ITER=str(KILL_AT),
                                  **env))
    assert res.returncode == -signal.SIGKILL, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def test_killed_mid_epoch_and_resumed_equals_uninterrupted(tmp_path, nuscenes_root):
    cfg = _config(tmp_path, nuscenes_root)
    total = ITERS_PER_EPOCH * EPOCHS
    _train(cfg, tmp_path / 'straight')
    _train(cfg, tmp_path / 'killed', kill=True)
    # killed in the middle of the first epoch, after the iteration-2 checkpoint
    assert sorted(p.name for p in (tmp_path / 'killed').glob('*.pth')) == ['iter_2.pth']
    res = _train(cfg, tmp_path / 'killed', '--resume')
    assert 'resuming epoch 1 after its first 2 of 4 iterations' in res.stdout + res.stderr

    straight = read_scalars(tmp_path / 'straight')
    resumed = read_scalars(tmp_path / 'killed')  # the newest run: the resumed one
    assert [r['iter'] for r in straight if 'loss_st' in r] == list(range(1, total + 1))
    assert [r['iter'] for r in resumed if 'loss_st' in r] == list(range(KILL_AT, total + 1))
    after = [r for r in straight if 'loss_st' in r][KILL_AT - 1:]
    # the same computation on the same weights and data, in one thread: equal, not close
    assert values(resumed, 'loss_st') == values(after, 'loss_st')
    assert values(resumed, 'lr') == values(after, 'lr')
    assert len(set(values(straight, 'lr'))) == total  # the schedule moves every iteration

    names = sorted(p.name for p in (tmp_path / 'straight').glob('*.pth'))
    assert names == [f'iter_{i}.pth' for i in (2, 4, 6, 8)]
    assert sorted(p.name for p in (tmp_path / 'killed').glob('*.pth')) == names
    a = torch.load(tmp_path / 'straight' / 'iter_8.pth', map_location='cpu')
    b = torch.load(tmp_path / 'killed' / 'iter_8.pth', map_location='cpu')
    assert (a['meta']['epoch'], a['meta']['iter']) == (b['meta']['epoch'], b['meta']['iter'])
    assert a['meta']['iter'] == total
    assert list(a['state_dict']) == list(b['state_dict'])
    for k, v in a['state_dict'].items():
        assert torch.equal(v, b['state_dict'][k]), k
