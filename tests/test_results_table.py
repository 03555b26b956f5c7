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
