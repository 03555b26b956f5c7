"""The installed package: a namespace under ``projects`` that other plugins can share, no code
reaching into ``tools/``, and the spconv build the set-up picks for a machine."""
import ast
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from projects.img2lidar.spconv_build import CPU_BUILD, choose_spconv, other_builds


def test_another_plugin_shares_the_projects_namespace(tmp_path):
    """``projects`` is a namespace package: a second plugin's ``projects.other`` imports next to
    ``projects.img2lidar`` (a regular ``projects/__init__.py`` would shadow one of them)."""
    other = tmp_path / 'plugins' / 'projects' / 'other'
    other.mkdir(parents=True)
    (other / '__init__.py').write_text('NAME = "other"\n')
    code = ('import projects.other, projects.img2lidar\n'
            'print(projects.other.NAME, projects.img2lidar.__version__)\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / 'plugins'),
                                                       str(REPO_ROOT)]))
    res = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-2:] == ['other', '0.1.0']


@pytest.mark.parametrize('folder', ['projects', 'tests'])
def test_nothing_imports_the_tools_folder(folder):
    """``tools/`` holds command lines only: the package works without it (installed) and tests
    exercise the package's own functions."""
    offenders = []
    for dirpath, _, files in os.walk(REPO_ROOT / folder):
        for name in files:
            if not name.endswith('.py'):
                continue
            path = os.path.join(dirpath, name)
            tree = ast.parse(open(path).read(), path)
            for node in ast.walk(tree):
                mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                        [node.module or ''] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f'{path}: {m}' for m in mods if m.split('.')[0] == 'tools']
    assert offenders == []


@pytest.mark.parametrize('python,cuda,expected', [
    ((3, 11), False, CPU_BUILD),
    ((3, 12), False, CPU_BUILD),
    ((3, 10), True, 'spconv-cu120==2.3.6'),  # the design's pin where it has a wheel
    ((3, 11), True, 'spconv-cu120==2.3.6'),
    ((3, 12), True, 'spconv-cu126==2.3.8'),  # cu120 2.3.6 has no cp312 wheel
    ((3, 13), True, 'spconv-cu126==2.3.8'),
])
def test_spconv_build_for_the_machine(python, cuda, expected):
    assert choose_spconv(python, cuda) == expected
    assert expected.split('==')[0] not in other_builds(expected)
    assert len(other_builds(expected)) == 2  # every other build is uninstalled first


def test_spconv_build_without_a_wheel_is_an_error():
    with pytest.raises(ValueError, match='Python 3.14'):
        choose_spconv((3, 14), True)


def test_spconv_build_runs_without_the_package():
    """tools/setup_env.sh calls the file before anything is installed."""
    path = REPO_ROOT / 'projects' / 'img2lidar' / 'spconv_build.py'
    res = subprocess.run([sys.executable, '-S', '-I', str(path), '--cuda', '1', '--python',
                          '3.12'], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == 'spconv-cu126==2.3.8'
