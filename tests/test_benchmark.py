"""``tools/benchmark.py``: every subcommand has its help and runs at tiny sizes, and every report
starts with the command that made it."""
import importlib.util
import re

import cv2
import numpy as np
import pytest

from conftest import NUSCENES_SAMPLE, REPO_ROOT
from projects.img2lidar.benchmarks.cli import SUBCOMMANDS
from projects.img2lidar.benchmarks.timing import Report, Times, interleaved


def _benchmark_tool():
    spec = importlib.util.spec_from_file_location('benchmark_tool',
                                                  REPO_ROOT / 'tools' / 'benchmark.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_times_and_report_format():
    t = Times([0.004, 0.001, 0.002])
    assert (t.min, t.median) == (0.001, 0.002)
    assert t.ms(1) == '1.0 / 2.0' and t.rate(8, 0) == '8000 / 4000'
    assert Times(np.array([0.003, 0.001])).min == 0.001  # per-image arrays, as superpixels
    calls = []
    times = interleaved(dict(a=lambda: calls.append('a'), b=lambda: calls.append('b')),
                        repeats=2, warmup=1, before_each=lambda i: calls.append(i))
    assert calls == [0, 'a', 0, 'b', 1, 'a', 1, 'b', 2, 'a', 2, 'b']
    assert [len(v) for v in times.values()] == [2, 2]
    report = Report('pipeline', ['--repeats', '2', '--out', 'a b.md'], 'Title')
    report.table(['x', 'y'], [(1, 2)])
    text = report.render()
    assert text.startswith("# Title\n\nCommand: `python tools/benchmark.py pipeline --repeats 2 "
                           "--out 'a b.md'`\n\nMachine: ")
    assert text.endswith('| x | y |\n|---|---:|\n| 1 | 2 |\n')


def test_every_subcommand_has_help_and_runs_at_tiny_sizes(nuscenes_root, tmp_path, capsys,
                                                         monkeypatch):
    # the one-thread subcommands set OMP_NUM_THREADS in this process: undone after the test
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    tool = _benchmark_tool()
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as stop:
            tool.main([name, '--help'])
        assert stop.value.code == 0
        assert 'usage:' in capsys.readouterr().out, name
    maps = str(nuscenes_root / 'superpixels')
    image = tmp_path / 'tiny.jpg'
    cv2.imwrite(str(image), cv2.resize(cv2.imread(str(next(NUSCENES_SAMPLE.glob('*.jpg')))),
                                       (80, 48)))
    runs = {
        'pipeline': ['--decode-scales', '2', '--repeats', '1', '--warmup', '0', '--sp-root',
                     maps],
        'loader': ['--workers', '1', '--batch-size', '1', '--batches', '1', '--repeats', '1',
                   '--copies', '2', '--sp-root', maps],
        'pretraining': ['--device', 'cpu', '--small', '--batch-sizes', '1', '--iters', '1',
                        '--warmup', '0', '--workers', '0'],
        'losses': ['--sizes', '32', '--dim', '8', '--teacher-dim', '16', '--repeats', '1',
                   '--warmup', '0', '--heads', 'slidr_infonce', 'st_quantile+cb',
                   'stslidr_reference'],
        'teachers': ['--teachers', 'mobilenetv2', '--size', '32', '64', '--repeats', '1'],
        'superpixels': [str(image), '--downscale', '1', '2', '--workers', '1', '--copies', '1',
                        '--repeats', '1'],
        'reading': ['--repeats', '2', '--sp-root', maps],
        'gather': ['--superpixels', '40', '--pairs', '200', '--dim', '4', '--teacher-dim', '8',
                   '--losses', 'infonce', '--threads', '1'],
    }
    assert set(runs) == set(SUBCOMMANDS) - {'step'}  # step's modes build the real networks
    for name, args in runs.items():
        out_file = tmp_path / f'{name}.md'
        # gather is tools/benchmark_step.py's mode, which prints its own report only
        out_args = [] if name == 'gather' else ['--out', str(out_file)]
        assert tool.main([name, *args, *out_args]) == 0, name
        out = capsys.readouterr().out
        if name == 'gather':  # tools/benchmark_step.py's own report
            assert 'infonce rank 0: sent' in out
            continue
        text = out_file.read_text()
        assert text in out
        command = re.escape(f'Command: `python tools/benchmark.py {name} ') + r'.*--out '
        assert re.search(command, text), (name, text)
        assert '\n| ' in text, (name, text)  # a table
    pipeline = (tmp_path / 'pipeline.md').read_text()
    for part in ('decode', 'maps', 'PointPixelPairing', 'PairedRandomResizedCrop',
                 'PackImageLidarInputs', 'dataset'):
        assert f'\n| {part} | ' in pipeline, part
    assert '| 1 | ' in (tmp_path / 'loader.md').read_text()
    generation = (tmp_path / 'superpixels.md').read_text()
    assert 'hours for 168,780 images on 16 cores' in generation
    assert np.isfinite(float(re.search(r'\| 2 \| 1 \| [^|]+\| [^|]+\| ([0-9.]+) \|',
                                       generation).group(1)))
