"""The evaluation harness (tools/evaluate_pretraining.py) on tiny protocols: 1-iteration
MinkUNet finetunes of a pretrained checkpoint on the SemanticKITTI fixture, through
tools/train.py and tools/test.py as a user runs them; the shipped protocols; the resume rule;
pretraining seeds; failed seeds; the work folder's lock; the statistics."""
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from conftest import (REPO_ROOT, SEMANTICKITTI_FIXTURE, finetune_config,
                      pretrained_distiller_checkpoint)
from projects.img2lidar.evaluation.commands import Launcher, train_command
from projects.img2lidar.evaluation.commands import test_command as tool_test_command
from projects.img2lidar.evaluation.harness import (checkpoint_argument, default_work_dir,
                                                   evaluate, next_step, plan)
from projects.img2lidar.evaluation.protocol import ProtocolError, load_protocol
from projects.img2lidar.evaluation.report import read_evaluation, write_evaluation
from projects.img2lidar.evaluation.run_folder import RunFolderConflict, write_json
from projects.img2lidar.evaluation.statistics import summarize
from projects.img2lidar.evaluation.work_lock import WorkFolderLocked, work_folder_lock

#: the cfg option of conftest.finetune_config's checkpoint (mmdet3d's backbone Pretrained init)
CHECKPOINT_OPTION = 'model.backbone.init_cfg.checkpoint'


def write_protocol(path: Path, config: Path, run: str, mode: str, lr: float = 1e-4,
                   pinned_lr: float = None, seeds: int = 2) -> Path:
    """A protocol file with one run of ``config`` (1 iteration, batch 1) at learning rate
    ``lr``, pinning ``pinned_lr`` (default: ``lr``). At lr 1e-4 the classifier stays close to
    its random initialisation, so that the seeds give different mIoUs."""
    pinned_lr = lr if pinned_lr is None else pinned_lr
    path.write_text(f'''
description = 'tiny protocol {path.stem}'
seeds = {seeds}
checkpoint_option = '{CHECKPOINT_OPTION}'
random_init_options = ['model.backbone.init_cfg=None']
runs = [dict(name='{run}', title='{run} title', config='{config}', mode='{mode}',
             cfg_options=['optim_wrapper.optimizer.lr={lr}'],
             pinned=dict(lr={pinned_lr}, head_lr={pinned_lr}, iters=1, batch=1,
                         split=dict(definition='the fixture scan',
                                    config={{'train_dataloader.dataset.ann_file':
                                             'semantickitti_infos.pkl'}})))]
''')
    return path


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A pretraining checkpoint in ``stslidr/``, a finetuning config starting from it, and two
    protocols of one run each, ``alpha`` and ``beta``."""
    root = tmp_path_factory.mktemp('evaluate')
    (root / 'stslidr').mkdir()
    ckpt = root / 'stslidr' / 'epoch_1.pth'
    with torch.random.fork_rng():
        torch.manual_seed(0)  # fixed weights: seeds 0 and 1 then give different mIoUs
        pretrained_distiller_checkpoint(ckpt)
    config = finetune_config(root / 'finetune.py', SEMANTICKITTI_FIXTURE, ckpt, iters=1)
    return dict(root=root, checkpoint=ckpt, config=config,
                alpha=write_protocol(root / 'alpha.py', config, 'finetune', 'train'),
                beta=write_protocol(root / 'beta.py', config, 'tested', 'train'))


def metrics_files(work: Path):
    return sorted(work.glob('*/*/seed*/metrics.json'))


def mtimes(work: Path):
    return {str(p.relative_to(work)): p.stat().st_mtime_ns for p in metrics_files(work)}


def assert_statistics_of(evaluation_json: Path, work: Path) -> None:
    """The statistics in an evaluation.json equal numpy's and scipy's on the mIoU and IoU
    values its jobs wrote to their metrics.json files."""
    data = json.loads(evaluation_json.read_text())
    for run in data['runs']:
        seeds = sorted(work.glob(f"{data['protocol']['name']}/{run['name']}/seed*/metrics.json"))
        written = [json.loads(p.read_text())['metrics'] for p in seeds]
        assert [r['metrics'] for r in run['results']] == written
        miou = 100 * np.array([m['miou'] for m in written])
        n = len(miou)
        assert run['miou']['n'] == n == 2
        assert run['miou']['mean'] == pytest.approx(np.mean(miou), rel=1e-12)
        assert run['miou']['std'] == pytest.approx(np.std(miou, ddof=1), rel=1e-12, abs=1e-12)
        assert np.std(miou) > 0  # the seeds differ (see write_protocol): a real interval
        low, high = stats.t.interval(0.95, n - 1, loc=np.mean(miou), scale=stats.sem(miou))
        assert run['miou']['ci'] == pytest.approx([low, high], rel=1e-12)
        for cls, summary in run['classes'].items():
            iou = 100 * np.array([m[cls] for m in written])
            if np.isnan(iou).all():
                assert summary is None
                continue
            iou = iou[~np.isnan(iou)]
            assert summary['mean'] == pytest.approx(np.mean(iou), rel=1e-12, abs=1e-12)
            if len(iou) > 1:
                assert summary['std'] == pytest.approx(np.std(iou, ddof=1), abs=1e-9)


def evaluate_pretraining_main():
    """tools/evaluate_pretraining.py's main(argv), loaded from the tool itself."""
    spec = importlib.util.spec_from_file_location(
        'evaluate_pretraining', REPO_ROOT / 'tools' / 'evaluate_pretraining.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool.main


def test_two_protocols_two_seeds_kept_and_resumed(tiny, tmp_path, capsys):
    """2 protocols x 2 seeds through the tools; a second call runs nothing; a removed job
    folder runs again from scratch and an interrupted job resumes, and only those two."""
    work = tmp_path / 'work'
    ckpt = str(tiny['checkpoint'])
    main = evaluate_pretraining_main()
    cli = [ckpt, '--work-dir', str(work), '--label', 'stslidr', '--seeds', '2']
    assert main([*cli, '--protocol', str(tiny['alpha'])]) == 0
    assert capsys.readouterr().out.count(': training (') == 2
    beta = evaluate(load_protocol(str(tiny['beta'])), ckpt, [0, 1], str(work), 'stslidr',
                    echo=False)
    assert beta.steps == {'beta/tested/seed0': 'start', 'beta/tested/seed1': 'start'}
    write_evaluation(beta, str(work / 'beta'))
    # every job ran its tools in its own folder, with its seed and the checkpoint
    for name, run in (('alpha', 'finetune'), ('beta', 'tested')):
        for seed in (0, 1):
            folder = work / name / run / f'seed{seed}'
            record = json.loads((folder / 'metrics.json').read_text())
            assert record['seed'] == seed and 0 <= record['metrics']['miou'] <= 1
            dumped = (folder / 'finetune.py').read_text()
            assert f'seed={seed}' in dumped and ckpt in dumped
            assert (folder / 'iter_1.pth').exists()
    assert json.loads((work / 'alpha/finetune/seed0/metrics.json').read_text())['source'] == \
        'validation after the last epoch'
    for name in ('alpha', 'beta'):
        assert_statistics_of(work / name / 'evaluation.json', work)
        assert (work / name / 'evaluation.png').stat().st_size > 1000
    md = (work / 'alpha' / 'evaluation.md').read_text()
    assert (f"| finetune title | `{tiny['config']}` | train | 0.0001 | 0.0001 | 1 iteration | 1 | "
            "the fixture scan (train_dataloader.dataset.ann_file='semantickitti_infos.pkl') |"
            ) in md
    assert f'- checkpoint: `{ckpt}`' in md and '- evaluation seeds (`randomness.seed`): 0, 1;' in md
    results = read_evaluation(str(work / 'alpha'))

    # a second call keeps every finished job
    before = mtimes(work)
    assert len(before) == 4
    for name in ('alpha', 'beta'):
        assert main([*cli, '--protocol', str(tiny[name])]) == 0
    out = capsys.readouterr().out
    assert out.count('finished before, kept') == 4 and 'tools/train.py' not in out
    assert mtimes(work) == before
    assert read_evaluation(str(work / 'alpha')) == results

    # one job's folder removed (beta seed 1): it runs again from scratch; one job interrupted
    # after its last checkpoint (alpha seed 0): it resumes from it with tools/train.py --resume,
    # which validates nothing at the end, so tools/test.py gives its metrics
    shutil.rmtree(work / 'beta' / 'tested' / 'seed1')
    folder = work / 'alpha' / 'finetune' / 'seed0'
    os.remove(folder / 'metrics.json')
    state = json.loads((folder / 'job.json').read_text())
    (folder / 'job.json').write_text(json.dumps(dict(state, trained=False)))
    again = {name: evaluate(load_protocol(str(tiny[name])), ckpt, [0, 1], str(work), 'stslidr',
                            echo=False) for name in ('alpha', 'beta')}
    assert again['beta'].steps == {'beta/tested/seed0': 'done', 'beta/tested/seed1': 'start'}
    assert again['alpha'].steps == {'alpha/finetune/seed0': 'resume',
                                    'alpha/finetune/seed1': 'done'}
    after = mtimes(work)
    assert {k for k in before if after[k] != before[k]} == {
        'alpha/finetune/seed0/metrics.json', 'beta/tested/seed1/metrics.json'}
    assert 'resumed' in (folder / 'train.log').read_text().lower()
    record = json.loads((folder / 'metrics.json').read_text())
    assert record['resumes'] == 1
    assert record['source'] == f"tools/test.py on {folder / 'iter_1.pth'}"
    for name in ('alpha', 'beta'):
        write_evaluation(again[name], str(work / name))
        assert_statistics_of(work / name / 'evaluation.json', work)


def test_resume_rule(tiny, tmp_path):
    """next_step from a folder's files alone (nothing runs)."""
    protocol = load_protocol(str(tiny['alpha']))
    job = plan(protocol, str(tiny['checkpoint']), [0], str(tmp_path), Launcher())[0]
    folder = Path(job.folder.path)
    assert next_step(job) == 'start'  # new
    job.folder.start(job.spec, clean=True)
    (folder / 'stray.txt').write_text('from the interrupted run')
    assert next_step(job) == 'start'  # interrupted before its first checkpoint: from scratch
    (folder / 'iter_1.pth').write_bytes(b'x')
    (folder / 'last_checkpoint').write_text(str(folder / 'iter_1.pth'))
    assert next_step(job) == 'resume'
    assert '--resume' in train_command(Launcher(), job.run.config, str(folder), job.options,
                                       resume=True).argv
    job.folder.start(job.spec, clean=True)
    assert not (folder / 'stray.txt').exists() and not (folder / 'iter_1.pth').exists()
    job.folder.mark_trained()
    assert next_step(job) == 'collect'
    job.folder.finish(dict(seed=0, metrics=dict(miou=0.5)))
    assert next_step(job) == 'done'


def test_folder_of_another_job_is_refused(tiny, tmp_path):
    """A folder recorded for another checkpoint (path or contents), or other options, is
    refused, and so is a non-empty folder the harness did not make."""
    protocol = load_protocol(str(tiny['alpha']))
    mine = tmp_path / 'mine' / 'epoch_1.pth'
    mine.parent.mkdir()
    shutil.copy(tiny['checkpoint'], mine)
    job = plan(protocol, str(mine), [0], str(tmp_path), Launcher())[0]
    job.folder.start(job.spec, clean=True)
    with pytest.raises(RunFolderConflict, match="checkpoint: '.*mine/epoch_1.pth' there"):
        plan(protocol, str(tiny['checkpoint']), [0], str(tmp_path), Launcher())
    with pytest.raises(RunFolderConflict, match='options'):
        plan(protocol, str(mine), [0], str(tmp_path), Launcher(),
             ['train_dataloader.num_workers=0'])
    with open(mine, 'ab') as f:  # retrained: new contents at the same path
        f.write(b'more')
    with pytest.raises(RunFolderConflict, match='checkpoint_sha256'):
        plan(protocol, str(mine), [0], str(tmp_path), Launcher())
    foreign = tmp_path / 'alpha' / 'finetune' / 'seed1'
    foreign.mkdir(parents=True)
    (foreign / 'epoch_1.pth').write_bytes(b'x')
    with pytest.raises(RunFolderConflict, match='not made by the evaluation harness'):
        plan(protocol, str(tiny['checkpoint']), [1], str(tmp_path), Launcher())


def test_pinned_values_are_checked_before_anything_runs(tiny, tmp_path):
    wrong = load_protocol(str(write_protocol(tmp_path / 'wrong.py', tiny['config'], 'finetune',
                                             'train', pinned_lr=0.5)))
    with pytest.raises(ProtocolError, match=r'lr: pinned 0.5, the config gives 0.0001'):
        plan(wrong, str(tiny['checkpoint']), [0], str(tmp_path / 'w'), Launcher())
    right = load_protocol(str(tiny['alpha']))
    with pytest.raises(ProtocolError, match=r'head_lr: pinned 0.0001, the config gives 0.03'):
        plan(right, str(tiny['checkpoint']), [0], str(tmp_path / 'w'), Launcher(),
             ['optim_wrapper.optimizer.lr=0.03'])
    with pytest.raises(ProtocolError, match='split train_dataloader.dataset.ann_file'):
        plan(right, str(tiny['checkpoint']), [0], str(tmp_path / 'w'), Launcher(),
             ['train_dataloader.dataset.ann_file=other.pkl'])
    with pytest.raises(ProtocolError, match='does not divide among 2 processes'):
        plan(right, str(tiny['checkpoint']), [0], str(tmp_path / 'w'), Launcher('pytorch', 2))
    assert not (tmp_path / 'w').exists()


def test_random_init_and_test_only_runs(tiny, tmp_path):
    alpha = load_protocol(str(tiny['alpha']))
    job = plan(alpha, None, [0], str(tmp_path), Launcher())[0]
    assert 'model.backbone.init_cfg=None' in job.options
    assert not any(o.startswith(CHECKPOINT_OPTION) for o in job.options)
    assert checkpoint_argument('none') is None and checkpoint_argument('Random') is None
    assert default_work_dir('random init') == os.path.join('work_dirs', 'evaluation',
                                                           'random_init')
    zero = tmp_path / 'zero.py'
    zero.write_text(f"runs = [dict(name='zs', config='{tiny['config']}', mode='test')]")
    protocol = load_protocol(str(zero))
    with pytest.raises(ProtocolError, match='needs one'):
        plan(protocol, None, [0, 1, 2], str(tmp_path), Launcher())
    jobs = plan(protocol, str(tiny['checkpoint']), [0, 1, 2], str(tmp_path), Launcher())
    assert [j.seed for j in jobs] == [0]  # nothing trained: one run
    assert not any(o.startswith(CHECKPOINT_OPTION) for o in jobs[0].options)


def test_commands_per_launcher(tiny):
    opts = ['randomness.seed=1']
    cfg = str(tiny['config'])
    cmd = train_command(Launcher('pytorch', 2), cfg, '/w', opts)
    assert cmd.argv[:4] == ['bash', cmd.argv[1], cfg, '2'] and cmd.argv[1].endswith(
        'tools/dist_train.sh')
    assert cmd.argv[4:] == ['--work-dir', '/w', '--cfg-options', 'randomness.seed=1']
    cmd = train_command(Launcher('slurm', 4, 'gpu'), cfg, '/w', opts, job_name='p-r-seed1')
    assert cmd.argv[1].endswith('tools/slurm_train.sh')
    assert cmd.argv[2:] == ['gpu', 'p-r-seed1', cfg, '/w', '--cfg-options', 'randomness.seed=1']
    assert cmd.env['GPUS'] == '4'
    cmd = tool_test_command(Launcher('pytorch', 2), cfg, '/c.pth', '/w/test', opts)
    assert cmd.argv[1].endswith('tools/dist_test.sh') and cmd.argv[2:5] == [cfg, '/c.pth', '2']
    cmd = tool_test_command(Launcher(), cfg, '/c.pth', '/w/test', [])
    assert cmd.argv[1].endswith('tools/test.py') and cmd.argv[2:] == [
        cfg, '/c.pth', '--work-dir', '/w/test']
    with pytest.raises(ValueError, match='partition'):
        Launcher('slurm', 2)
    with pytest.raises(ValueError, match='more than one'):
        Launcher('none', 2)


def test_shipped_protocols(tmp_path):
    """The protocols of configs/protocols name existing configs whose hyper-parameters are the
    pinned ones (checked as the harness checks them, without running anything)."""
    ckpt = tmp_path / 'stslidr' / 'epoch_50.pth'
    ckpt.parent.mkdir()
    ckpt.write_bytes(b'x')
    text = tmp_path / 'text.pth'
    text.write_bytes(b'x')
    slidr = load_protocol('slidr')
    assert slidr.seeds == 3 and [r.title for r in slidr.runs] == [
        'linear probe, nuScenes', 'nuScenes 1%', 'SemanticKITTI 1%']
    jobs = plan(slidr, str(ckpt), [0, 1, 2], str(tmp_path / 'w'), Launcher('pytorch', 2))
    assert len(jobs) == 9
    assert 'train_dataloader.batch_size=8' in jobs[0].options
    assert f'model.init_cfg.checkpoint={ckpt}' in jobs[0].options
    demo = load_protocol('demo')
    assert [r.title for r in demo.runs] == ['linear probe', 'few-shot finetune']
    assert len(plan(demo, None, [0], str(tmp_path / 'w'), Launcher())) == 2
    zero = load_protocol('zero-shot')
    with pytest.raises(ProtocolError, match='model.text_embeddings'):
        plan(zero, str(ckpt), [0], str(tmp_path / 'w'), Launcher())
    assert len(plan(zero, str(ckpt), [0], str(tmp_path / 'w'), Launcher(),
                    [f'model.text_embeddings={text}'])) == 1
    assert [r.title for r in zero.runs] == ['zero-shot, nuScenes']
    pandaset = load_protocol('pandaset')
    assert pandaset.runs[0].config.endswith('minkunet34_linear-probe_2xb8-100e_pandaset.py')
    assert [r.title for r in pandaset.runs] == ['linear probe, PandaSet']
    assert len(plan(pandaset, str(ckpt), [0, 1], str(tmp_path / 'w'), Launcher())) == 2


def test_statistics_known_values():
    s = summarize([1.0, 2.0, 3.0])
    assert s.n == 3 and s.mean == 2.0 and s.std == 1.0
    # t(0.975, 2) = 4.302652729911275 (tables); half-width 4.3027 / sqrt(3)
    assert s.ci == pytest.approx((2 - 2.4841377118, 2 + 2.4841377118), abs=1e-9)
    s = summarize([40.1, float('nan'), 40.5, 39.9, 40.3])
    assert s.values == (40.1, 40.5, 39.9, 40.3) and s.mean == pytest.approx(40.2)
    assert s.std == pytest.approx(np.std([40.1, 40.5, 39.9, 40.3], ddof=1))
    # the NaN is kept as a failed position, not dropped: 4 of 5 values are summarised
    assert (s.n, s.total, s.non_finite) == (4, 5, (1, ))
    assert s.to_dict()['non_finite'] == [1] and s.to_dict()['n_total'] == 5
    assert summarize([7.0]).std is None and summarize([7.0]).ci is None
    s = summarize([float('nan'), None, float('inf')])
    assert s.mean is None and s.non_finite == (0, 1, 2) and s.total == 3
    assert summarize([]) is None
    assert math.isclose(stats.t.ppf(0.975, 2), 4.302652729911275)


def test_json_written_through_a_unique_temporary_file(tmp_path):
    """job.json and metrics.json go through a uniquely named temporary file: another writer's
    ``<name>.tmp`` (the name every writer used before) is left alone, and nothing is left."""
    other = tmp_path / 'job.json.tmp'
    other.write_text('another writer')
    write_json(str(tmp_path / 'job.json'), dict(a=1))
    assert other.read_text() == 'another writer'
    assert json.loads((tmp_path / 'job.json').read_text()) == dict(a=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['job.json', 'job.json.tmp']


#: a second process that takes the lock of a folder (with the module alone, loaded from its
#: file: no torch) and holds it until killed
HOLDER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location('work_lock', sys.argv[1])
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)
lock.acquire(sys.argv[2])
print('held', flush=True)
sys.stdin.read()
"""


def test_second_evaluation_of_a_folder_fails_at_once(tmp_path, capsys):
    """While another process holds <work-dir>/<protocol>, the tool fails before planning,
    naming the folder and the holder's pid; once the holder is killed (never released), the
    lock is free: the operating system dropped it."""
    work = tmp_path / 'work'
    folder = work / 'demo'
    holder = subprocess.Popen(
        [sys.executable, '-c', HOLDER,
         str(REPO_ROOT / 'projects' / 'img2lidar' / 'evaluation' / 'work_lock.py'), str(folder)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        main = evaluate_pretraining_main()
        assert main(['none', '--protocol', 'demo', '--work-dir', str(work)]) == 1
        err = capsys.readouterr().err
        assert f'{folder} is in use by another evaluation' in err
        assert f'pid {holder.pid} on ' in err
        assert sorted(p.name for p in folder.iterdir()) == ['.evaluate.lock']  # nothing planned
        with pytest.raises(WorkFolderLocked, match=f'pid {holder.pid} '):
            evaluate(load_protocol('demo'), None, [0], str(work), 'random init', echo=False)
    finally:
        holder.kill()
        holder.wait()
    with work_folder_lock(str(folder)) as path:  # free again; re-entrant in one process
        with work_folder_lock(str(folder)):
            pass
        assert open(path).read().startswith(f'pid {os.getpid()} on ')


def finish_jobs(jobs, miou) -> None:
    """Record every job as finished with ``miou(job)`` (nothing runs)."""
    for job in jobs:
        job.folder.start(job.spec, clean=True)
        job.folder.mark_trained()
        value = miou(job)
        job.folder.finish(dict(seed=job.seed, metrics=dict(miou=value, car=value)))


def test_pretraining_seeds_and_a_failed_seed(tmp_path, capsys):
    """Two pretraining runs of one method x two evaluation seeds: each job in
    <run>/pretrain<p>_seed<k>, statistics over the 4 results (one of which failed: counted and
    named, the others summarised); one checkpoint keeps <run>/seed<k>."""
    ckpts = []
    for p in range(2):
        path = tmp_path / f'slidr_s{p}' / 'epoch_6.pth'
        path.parent.mkdir()
        path.write_bytes(f'pretraining run {p}'.encode())  # only hashed: every job is finished
        ckpts.append(str(path))
    demo = load_protocol('demo')
    work = tmp_path / 'work'
    jobs = plan(demo, ckpts, [0, 1], str(work), Launcher())
    assert [j.name for j in jobs] == [
        f'demo/{run}/pretrain{p}_seed{k}' for run in ('linear-probe', 'few-shot')
        for p in (0, 1) for k in (0, 1)]
    assert all(j.folder.path == str(work / j.name) for j in jobs)
    assert all(f'model.init_cfg.checkpoint={ckpts[j.pretrain]}' in j.options for j in jobs)
    value = {(j.run.name, j.pretrain, j.seed): (0.30 if j.run.name == 'linear-probe' else 0.50)
             + 0.05 * j.pretrain + 0.01 * j.seed for j in jobs}
    value[('few-shot', 1, 1)] = float('nan')  # diverged
    finish_jobs(jobs, lambda j: value[(j.run.name, j.pretrain, j.seed)])

    main = evaluate_pretraining_main()
    cli = [*ckpts, '--protocol', 'demo', '--seeds', '2', '--label', 'SLidR',
           '--work-dir', str(work)]
    assert main(cli) == 0
    assert capsys.readouterr().out.count('finished before, kept') == 8
    data = json.loads((work / 'demo' / 'evaluation.json').read_text())
    assert data['checkpoints'] == ckpts and data['seeds'] == [0, 1]
    probe, few = data['runs']
    assert [(r['pretrain'], r['seed']) for r in probe['results']] == [(0, 0), (0, 1), (1, 0),
                                                                       (1, 1)]
    assert (probe['pretraining_seeds'], probe['evaluation_seeds']) == (2, 2)
    miou = 100 * np.array([0.30, 0.31, 0.35, 0.36])
    assert probe['miou']['n'] == 4 and probe['failed'] == []
    assert probe['miou']['mean'] == pytest.approx(np.mean(miou), rel=1e-12)
    low, high = stats.t.interval(0.95, 3, loc=np.mean(miou), scale=stats.sem(miou))
    assert probe['miou']['ci'] == pytest.approx([low, high], rel=1e-12)
    # the failed run: named, counted, not in the statistics (over the 3 others)
    assert few['failed'] == [dict(pretrain=1, seed=1)]
    assert (few['miou']['n'], few['miou']['n_total'], few['miou']['non_finite']) == (3, 4, [3])
    assert few['miou']['mean'] == pytest.approx(np.mean([50.0, 51.0, 55.0]))
    assert math.isnan(few['results'][3]['metrics']['miou']) and few['results'][3]['failed']
    md = (work / 'demo' / 'evaluation.md').read_text()
    assert '- pretraining seeds: 2 pretraining runs of the method' in md
    assert f'  - pretraining 1: `{ckpts[1]}`' in md
    assert '- results per training run: 2 pretraining × 2 evaluation seeds' in md
    assert '| few-shot finetune | 52.00 | 2.65 |' in md  # mean, std of 50, 51, 55
    assert '| 3 | 2 × 2 | 1: pretraining 1 / seed 1 |' in md
    assert 'nan (pretraining 1 / seed 1)' in md
    results = read_evaluation(str(work / 'demo'))
    assert [r.pretrain for r in results] == [0, 0, 1, 1] * 2

    # one checkpoint: today's layout; refusals before anything runs
    assert plan(demo, ckpts[0], [0], str(tmp_path / 'one'), Launcher())[0].folder.path == str(
        tmp_path / 'one' / 'demo' / 'linear-probe' / 'seed0')
    copy = tmp_path / 'copy.pth'
    shutil.copy(ckpts[0], copy)
    with pytest.raises(ProtocolError, match='same checkpoint'):
        plan(demo, [ckpts[0], str(copy)], [0], str(tmp_path / 'w'), Launcher())
    with pytest.raises(ProtocolError, match='random init'):
        plan(demo, [None, ckpts[0]], [0], str(tmp_path / 'w'), Launcher())
    with pytest.raises(SystemExit):
        main([*ckpts, '--protocol', 'demo'])
    assert 'need --label' in capsys.readouterr().err
