"""The installed package: a namespace under ``projects`` that other plugins can share, and no code
reaching into ``tools/``. (What the set-up installs on a machine: ``tests/test_setup_plan.py``.)"""
import ast
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


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


#: a reference to something outside the repository: the shared folder beside a checkout, or
#: its docs and data
OUTSIDE = __import__('re').compile(r"\.\./shared|shared/(docs|data)|['\"]shared['\"]")


def test_no_tracked_file_refers_outside_the_repository():
    """A user's clone has nothing beside it: no code, config, tool or README line may name the
    shared folder (except through ``IMG2LIDAR_SHARED_DATA``, where the optional PandaSet sample
    is looked for)."""
    files = subprocess.run(['git', 'ls-files', 'projects', 'tools', 'configs', 'README.md',
                            'CHANGELOG.md', 'setup.py', 'docs'], cwd=REPO_ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    assert len(files) > 100
    offenders = []
    for name in files:
        path = REPO_ROOT / name
        if path.suffix in ('.png', '.jpg', '.bin', '.pkl') or not path.is_file():
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if OUTSIDE.search(line) and 'IMG2LIDAR_SHARED_DATA' not in line:
                offenders.append(f'{name}:{number}: {line.strip()}')
    assert not offenders, '\n'.join(offenders)
