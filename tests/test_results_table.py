"""The results table (tools/results_table.py) on work directories laid out as mmengine writes
them (the shipped configs, merged and dumped as tools/train.py dumps them), and on the
harness's evaluations: protocol labels read from the configs, failed seeds, pretraining seeds
and the paired differences."""
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from scipy import stats

from conftest import REPO_ROOT
from projects.img2lidar.evaluation.paired import paired_differences
from projects.img2lidar.evaluation.protocol_label import protocol_label
from projects.img2lidar.evaluation.results import RunResult
from projects.img2lidar.evaluation.results_table import collect, write_results

CKPT = 'work_dirs/stslidr_run/epoch_50.pth'
NUSCENES_PROBE = 'configs/linear_probe/minkunet34_linear-probe_2xb8-100e_nuscenes-lidarseg.py'
PANDASET_PROBE = 'configs/linear_probe/minkunet34_linear-probe_2xb8-100e_pandaset.py'
NUSCENES_1PCT = 'configs/finetune/minkunet34_2xb8-100e_nuscenes-lidarseg-1pct.py'
NUSCENES_100PCT = 'configs/finetune/minkunet34_2xb8-100e_nuscenes-lidarseg-100pct.py'
PANDASET_FT = 'configs/finetune/minkunet34_2xb8-100e_pandaset.py'
KITTI_1PCT = 'configs/finetune/minkunet34_2xb8-100e_semantickitti-1pct.py'
ZERO_SHOT = 'configs/zero_shot/zeroshot_minkunet34_clip-vitb16_nuscenes-lidarseg.py'
DEMO_FT = 'configs/demo/minkunet-w16_1xb2-30e_demo-fewshot.py'
DEMO_PROBE = 'configs/demo/minkunet-w16_linear-probe_1xb2-6e_demo.py'


def shipped(config: str, **options) -> Config:
    """A shipped config as tools/train.py builds it with ``--cfg-options``."""
    cfg = Config.fromfile(str(REPO_ROOT / config))
    cfg.merge_from_dict(options)
    return cfg


def run_folder(tmp_path: Path, name: str, config: str, miou: float, car: float,
               **options) -> str:
    """A work directory as mmengine leaves it: the dumped config and the validation log."""
    wd = tmp_path / name
    (wd / '20261121_000000' / 'vis_data').mkdir(parents=True)
    shipped(config, **options).dump(str(wd / Path(config).name))
    rows = [dict(loss=1.0, step=1),
            dict(miou=miou - 0.1, car=car - 0.1, road=0.5, acc=0.9, acc_cls=0.8, step=10),
            dict(miou=miou, car=car, road=float('nan'), acc=0.9, acc_cls=0.8, step=20)]
    with open(wd / '20261121_000000' / 'vis_data' / 'scalars.json', 'w') as f:
        f.write('\n'.join(json.dumps(r) for r in rows))
    return str(wd)


def test_nuscenes_and_pandaset_runs_get_their_own_labels(tmp_path):
    """The dumped configs of nuScenes and PandaSet runs: distinct columns named by dataset and
    label fraction (the regexes called a PandaSet finetune 'nuScenes 100%' and merged the two
    probes into one 'linear probe' column)."""
    ck = {'model.init_cfg.checkpoint': CKPT, 'randomness.seed': 0}
    dirs = [
        run_folder(tmp_path, 'a', NUSCENES_PROBE, 0.405, 0.7, **ck),
        run_folder(tmp_path, 'b', PANDASET_PROBE, 0.215, 0.6, **ck),
        run_folder(tmp_path, 'c', NUSCENES_1PCT, 0.4075, 0.8, **ck),
        run_folder(tmp_path, 'd', PANDASET_FT, 0.312, 0.5, **ck),
        run_folder(tmp_path, 'e', KITTI_1PCT, 0.4472, 0.9, **ck),
        run_folder(tmp_path, 'f', NUSCENES_1PCT, 0.303, 0.6,
                   **{'model.init_cfg': None, 'randomness.seed': 0}),
    ]
    rows = collect(dirs, None)
    assert [r.protocol for r in rows] == [
        'linear probe, nuScenes', 'linear probe, PandaSet', 'nuScenes 1%', 'PandaSet 100%',
        'SemanticKITTI 1%', 'nuScenes 1%']
    assert [r.method for r in rows] == ['stslidr_run'] * 5 + ['random init']
    assert [r.seed for r in rows] == [0] * 6
    out = write_results(rows, str(tmp_path / 't.md'), str(tmp_path / 't.json'))
    lines = out.splitlines()
    assert lines[0] == ('| method | linear probe, nuScenes | linear probe, PandaSet | nuScenes 1% '
                        '| PandaSet 100% | SemanticKITTI 1% | seeds (pretraining × evaluation) |')
    assert lines[2] == '| stslidr_run | 40.5 | 21.5 | 40.8 | 31.2 | 44.7 | 1 × 1 |'
    assert lines[3] == '| random init | - | - | 30.3 | - | - | 1 × 1 |'
    assert '| stslidr_run | nuScenes 1% | 80.0 | - |' in out  # per class: car, road (NaN -> -)
    assert (tmp_path / 't.md').read_text().strip() == out.strip()
    table = json.loads((tmp_path / 't.json').read_text())['methods']
    assert table['stslidr_run']['nuScenes 1%']['mean'] == pytest.approx(40.75)
    assert table['stslidr_run']['PandaSet 100%']['mean'] == pytest.approx(31.2)


def test_labels_of_other_protocols(tmp_path):
    """100%, the zero-shot test (its checkpoint is tools/test.py's load_from), the demo world,
    every_nth and mmengine's indices."""
    zero = run_folder(tmp_path, 'z', ZERO_SHOT, 0.21, 0.5,
                      load_from='work_dirs/clipdistill_run/epoch_50.pth')
    full = run_folder(tmp_path, 'n', NUSCENES_100PCT, 0.6, 0.9, **{'model.init_cfg': None})
    (zr, fr) = collect([zero, full])
    assert (zr.protocol, zr.method) == ('zero-shot, nuScenes', 'clipdistill_run')
    assert (fr.protocol, fr.method) == ('nuScenes 100%', 'random init')
    assert protocol_label(shipped(DEMO_FT)) == 'demo world 25%'
    assert protocol_label(shipped(DEMO_PROBE)) == 'linear probe, demo world'
    assert protocol_label(shipped(KITTI_1PCT, **{'train_dataloader.dataset.every_nth': 10})) \
        == 'SemanticKITTI 10%'
    assert protocol_label(shipped(NUSCENES_1PCT, **{'train_dataloader.dataset.indices': 10})) \
        == 'nuScenes 1%, 10 samples'
    assert protocol_label(shipped(PANDASET_PROBE, **{'train_dataloader.dataset.indices': 4})) \
        == 'linear probe, PandaSet 100%, 4 samples'


def test_seeds_of_one_protocol_share_a_cell(tmp_path):
    """Work directories of one method and protocol with different seeds: mean ± sample std."""
    dirs = [run_folder(tmp_path, f's{seed}', NUSCENES_1PCT, miou, car,
                       **{'model.init_cfg.checkpoint': CKPT, 'randomness.seed': seed})
            for seed, miou, car in ((0, 0.40, 0.7), (1, 0.42, 0.8), (2, 0.44, 0.9))]
    rows = collect(dirs, None)
    assert [r.seed for r in rows] == [0, 1, 2]
    out = write_results(rows, json_file=str(tmp_path / 't.json'))
    assert out.splitlines()[2] == '| stslidr_run | 42.0 ± 2.0 | 1 × 3 |'
    assert '| stslidr_run | nuScenes 1% | 80.0 ± 10.0 | - |' in out
    cell = json.loads((tmp_path / 't.json').read_text())['methods']['stslidr_run']['nuScenes 1%']
    assert cell['mean'] == pytest.approx(42.0) and cell['std'] == pytest.approx(2.0)
    assert cell['n'] == 3 and cell['failed'] == []


def test_failed_seed_is_reported_not_dropped(tmp_path):
    """One seed of three diverged (NaN mIoU): the cell counts it and the JSON names it; the
    mean and std are over the two others, as stated."""
    rows = [RunResult('ST-SLidR', 'nuScenes 1%', seed, dict(miou=m, car=m))
            for seed, m in ((0, 0.40), (1, float('nan')), (2, 0.42))]
    rows.append(RunResult('SLidR', 'nuScenes 1%', 0, dict(miou=0.5, car=0.5)))
    out = write_results(rows, json_file=str(tmp_path / 't.json'))
    # mean (40 + 42) / 2 = 41, sample std sqrt(2) = 1.414
    assert out.splitlines()[2] == '| ST-SLidR | 41.0 ± 1.4 (1 of 3 failed) | 1 × 3 |'
    cell = json.loads((tmp_path / 't.json').read_text())['methods']['ST-SLidR']['nuScenes 1%']
    assert cell['failed'] == [dict(pretrain=None, seed=1)]
    assert (cell['n'], cell['n_total'], cell['non_finite']) == (2, 3, [1])
    assert cell['mean'] == pytest.approx(41.0) and cell['std'] == pytest.approx(math.sqrt(2))
    every = [RunResult('X', 'p', s, dict(miou=float('nan'))) for s in (0, 1)]
    assert write_results(every).splitlines()[2] == '| X | failed (2 of 2) | 1 × 2 |'


#: mIoU (%) of hand-made results: method -> {(pretraining seed, evaluation seed): mIoU}
HAND = {
    'SLidR': {(0, 0): 36.2, (0, 1): 35.0, (1, 0): 32.9, (1, 1): 33.5, (2, 0): 30.0,
              (2, 1): 31.0},
    'ST-SLidR': {(0, 0): 30.6, (0, 1): 31.0, (1, 0): 17.3, (1, 1): 18.5, (2, 0): 29.0,
                 (2, 1): float('nan'), (3, 0): 25.0},
}


def hand_results(protocol: str = 'linear probe, demo world'):
    return [RunResult(m, protocol, e, dict(miou=v / 100), p)
            for m, runs in HAND.items() for (p, e), v in runs.items()]


def test_paired_differences_by_pretraining_and_evaluation_seed():
    """Differences paired on (pretraining seed, evaluation seed), checked against hand
    arithmetic and scipy's paired t-test; the failed pair is counted, the unpaired run too."""
    (d,) = paired_differences(hand_results(), 'SLidR')
    assert (d.method, d.reference, d.protocol) == ('ST-SLidR', 'SLidR', 'linear probe, demo world')
    assert d.keys == ((0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1))
    assert d.failed_keys == [(2, 1)] and d.unpaired == 1  # (3, 0) of ST-SLidR has no partner
    # by hand: 30.6-36.2, 31.0-35.0, 17.3-32.9, 18.5-33.5, 29.0-30.0
    hand = [-5.6, -4.0, -15.6, -15.0, -1.0]
    assert d.differences.values == pytest.approx(hand)
    assert d.differences.mean == pytest.approx(-41.2 / 5)
    ours = [HAND['ST-SLidR'][k] for k in d.keys if k != (2, 1)]
    ref = [HAND['SLidR'][k] for k in d.keys if k != (2, 1)]
    test = stats.ttest_rel(ours, ref)
    assert d.differences.ci == pytest.approx(tuple(test.confidence_interval(0.95)), rel=1e-9)
    assert d.differences.std == pytest.approx(np.std(hand, ddof=1), rel=1e-12)
    with pytest.raises(ValueError, match="no results of the reference method 'PPKT'"):
        paired_differences(hand_results(), 'PPKT')


def results_table_main():
    spec = importlib.util.spec_from_file_location(
        'results_table_tool', REPO_ROOT / 'tools' / 'results_table.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool.main


def test_evaluations_of_the_harness(tmp_path, capsys):
    """tools/results_table.py shows the harness's evaluation.json files: every pretraining and
    evaluation seed of every run, under the evaluation's label (or --labels), and with
    --paired-with the paired differences (JSON too)."""
    from projects.img2lidar.evaluation.commands import Launcher
    from projects.img2lidar.evaluation.protocol import load_protocol
    from projects.img2lidar.evaluation.report import write_evaluation
    from projects.img2lidar.evaluation.results import Evaluation
    (tmp_path / 'probe.py').write_text('')
    (tmp_path / 'ft.py').write_text('')
    (tmp_path / 'p.py').write_text(f"""runs = [
    dict(name='probe', title='linear probe', config='{tmp_path / 'probe.py'}', mode='train'),
    dict(name='ft', title='few-shot finetune', config='{tmp_path / 'ft.py'}', mode='train')]""")
    protocol = load_protocol(str(tmp_path / 'p.py'))
    dirs = []
    for label, base in (('ST-SLidR', 0.30), ('random init', 0.05)):
        ev = Evaluation(protocol, label, None, (0, 1), Launcher())
        ev.results = [RunResult(label, title, seed, dict(miou=base + add + 0.02 * seed, car=0.5))
                      for title, add in (('linear probe', 0.0), ('few-shot finetune', 0.2))
                      for seed in (0, 1)]
        dirs.append(str(tmp_path / label.replace(' ', '_') / 'p'))
        write_evaluation(ev, dirs[-1])
    rows = collect(dirs)
    assert len(rows) == 8 and rows[1].seed == 1
    lines = write_results(rows, png=str(tmp_path / 'chart.png')).splitlines()
    assert lines[0] == ('| method | linear probe | few-shot finetune | '
                        'seeds (pretraining × evaluation) |')
    assert lines[2] == '| ST-SLidR | 31.0 ± 1.4 | 51.0 ± 1.4 | 1 × 2 |'
    assert lines[3] == '| random init | 6.0 ± 1.4 | 26.0 ± 1.4 | 1 × 2 |'
    assert (tmp_path / 'chart.png').stat().st_size > 1000
    assert {r.method for r in collect(dirs[:1] + [dirs[1] + '/evaluation.json'],
                                      ['a', 'b'])} == {'a', 'b'}

    # pretraining seeds: the hand-made results as two evaluations, through the tool
    hand = []
    for method in HAND:
        checkpoints = tuple(f'/ckpt/{method}/seed{p}.pth'
                            for p in sorted({p for p, _ in HAND[method]}))
        ev = Evaluation(protocol, method, checkpoints, (0, 1), Launcher())
        ev.results = [r for r in hand_results('linear probe') if r.method == method]
        hand.append(str(tmp_path / method / 'p'))
        write_evaluation(ev, hand[-1])
    assert [r.pretrain for r in collect(hand[:1])] == [0, 0, 1, 1, 2, 2]
    main = results_table_main()
    assert main([*hand, '--paired-with', 'SLidR', '--json', str(tmp_path / 'h.json')]) == 0
    out = capsys.readouterr().out
    # SLidR over 6 results; ST-SLidR over the 6 that did not fail of 7 (4 pretraining seeds)
    assert '| SLidR | 33.1 ± 2.3 | 3 × 2 |' in out
    finite = [v for v in HAND['ST-SLidR'].values() if not math.isnan(v)]
    assert f'| ST-SLidR | {np.mean(finite):.1f} ± {np.std(finite, ddof=1):.1f} (1 of 7 failed) ' \
        '| 4 × 2 |' in out
    low, high = stats.ttest_rel([30.6, 31.0, 17.3, 18.5, 29.0],
                                [36.2, 35.0, 32.9, 33.5, 30.0]).confidence_interval(0.95)
    std = np.std([-5.6, -4.0, -15.6, -15.0, -1.0], ddof=1)
    assert (f'| ST-SLidR | linear probe | -8.24 | {std:.2f} | [{low:+.2f}, {high:+.2f}] | 5 '
            '| pretraining 2 / seed 1 | 1 |') in out
    paired = json.loads((tmp_path / 'h.json').read_text())['paired']
    assert paired[0]['difference']['mean'] == pytest.approx(-8.24)
    assert paired[0]['pairs'][-1] == [2, 1] and paired[0]['difference']['non_finite'] == [5]
