"""The results table (tools/results_table.py) on work directories laid out as mmengine writes
them."""
import json

from projects.img2lidar.evaluation.results_table import collect, write_results


def _run(tmp_path, name, config_name, config_text, miou, car):
    wd = tmp_path / name
    (wd / '20261121_000000' / 'vis_data').mkdir(parents=True)
    (wd / config_name).write_text(config_text)
    rows = [dict(loss=1.0, step=1),
            dict(miou=miou - 0.1, car=car - 0.1, road=0.5, acc=0.9, acc_cls=0.8, step=10),
            dict(miou=miou, car=car, road=float('nan'), acc=0.9, acc_cls=0.8, step=20)]
    with open(wd / '20261121_000000' / 'vis_data' / 'scalars.json', 'w') as f:
        f.write('\n'.join(json.dumps(r) for r in rows))
    return str(wd)


def test_table_of_methods_and_protocols(tmp_path):
    ck = "init_cfg=dict(type='Pretrained', checkpoint='work_dirs/stslidr_run/epoch_50.pth')"
    dirs = [
        _run(tmp_path, 'a', 'minkunet34_linear-probe_nuscenes-lidarseg.py',
             f"model = dict(type='LinearProbeMinkUNet', {ck})", 0.405, 0.7),
        _run(tmp_path, 'b', 'minkunet34_2xb8-100e_nuscenes-lidarseg-1pct.py',
             f"few_shot=1\nmodel = dict(type='MinkUNet', {ck})", 0.4075, 0.8),
        _run(tmp_path, 'c', 'minkunet34_2xb8-100e_nuscenes-lidarseg-1pct.py',
             "few_shot=1\nmodel = dict(type='MinkUNet', init_cfg=None)", 0.303, 0.6),
        _run(tmp_path, 'd', 'minkunet34_2xb8-100e_semantickitti-1pct.py',
             f"every_nth=100\nmodel = dict(type='MinkUNet', {ck})", 0.4472, 0.9),
    ]
    out = write_results(collect(dirs, None), str(tmp_path / 't.md'), str(tmp_path / 't.json'))
    lines = out.splitlines()
    assert lines[0] == '| method | linear probe | nuScenes 1% | SemanticKITTI 1% |'
    assert lines[2] == '| stslidr_run | 40.5 | 40.8 | 44.7 |'
    assert lines[3] == '| random init | - | 30.3 | - |'
    assert '| stslidr_run | nuScenes 1% | 80.0 | - |' in out  # per class: car, road (NaN -> -)
    assert (tmp_path / 't.md').read_text().strip() == out.strip()
    assert json.loads((tmp_path / 't.json').read_text())['stslidr_run']['nuScenes 1%'] == 40.75


def test_seeds_of_one_protocol_share_a_cell(tmp_path):
    """Work directories of one method and protocol with different seeds: mean ± sample std."""
    ck = "init_cfg=dict(type='Pretrained', checkpoint='work_dirs/stslidr_run/epoch_50.pth')"
    dirs = [_run(tmp_path, f's{seed}', 'minkunet34_2xb8-100e_nuscenes-lidarseg-1pct.py',
                 f"few_shot=1\nrandomness = dict(seed={seed})\nmodel = dict({ck})", miou, car)
            for seed, miou, car in ((0, 0.40, 0.7), (1, 0.42, 0.8), (2, 0.44, 0.9))]
    rows = collect(dirs, None)
    assert [r.seed for r in rows] == [0, 1, 2]
    out = write_results(rows, json_file=str(tmp_path / 't.json'))
    assert out.splitlines()[2] == '| stslidr_run | 42.0 ± 2.0 |'
    assert '| stslidr_run | nuScenes 1% | 80.0 ± 10.0 | - |' in out
    assert json.loads((tmp_path / 't.json').read_text()) == {'stslidr_run': {'nuScenes 1%': 42.0}}


def test_evaluations_of_the_harness(tmp_path):
    """tools/results_table.py shows the harness's evaluation.json files: every seed of every
    run, under the evaluation's label (or --labels), as the demo's final table."""
    from projects.img2lidar.evaluation.commands import Launcher
    from projects.img2lidar.evaluation.protocol import load_protocol
    from projects.img2lidar.evaluation.report import write_evaluation
    from projects.img2lidar.evaluation.results import Evaluation, RunResult
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
    assert lines[0] == '| method | linear probe | few-shot finetune |'
    assert lines[2] == '| ST-SLidR | 31.0 ± 1.4 | 51.0 ± 1.4 |'
    assert lines[3] == '| random init | 6.0 ± 1.4 | 26.0 ± 1.4 |'
    assert (tmp_path / 'chart.png').stat().st_size > 1000
    assert {r.method for r in collect(dirs[:1] + [dirs[1] + '/evaluation.json'],
                                      ['a', 'b'])} == {'a', 'b'}
