"""What ``tools/setup_env.sh`` installs on a machine: every pin of the stack and every decision.

This file uses the standard library only and runs without the package, because
``tools/setup_env.sh`` calls it before anything is installed. The set-up goes in three steps:

1. :func:`probe_machine` describes the machine (:class:`Machine`): the Python version, whether a
   CUDA GPU is usable, torch's CUDA version, the nvcc that torch's extension builder would use,
   the installed numpy and the state of torchvision;
2. :func:`make_plan` turns that description into a :class:`Plan` (a pure function, tested on
   described machines in ``tests/test_setup_plan.py``);
3. ``tools/setup_env.sh`` follows the plan (``python setup_plan.py shell`` prints it as shell
   variables).

The decisions:

============  ===================================================================================
torch         CPU machines: ``torch==2.13.0`` (the local CPU wheel) in an isolated venv. CUDA
              machines: the CUDA torch already installed, seen through a venv with the system
              site-packages.
mmcv          2.1.0 is always built from its sdist (no wheel matches these torch builds). Its
              ``setup.py`` compiles the CUDA kernels whenever ``torch.cuda.is_available()`` *or*
              ``FORCE_CUDA=1``, so ``FORCE_CUDA=0`` alone does not give a CPU-ops build on a GPU
              machine. With a CUDA GPU, a CUDA torch and an nvcc of torch's CUDA major version
              (torch's extension builder refuses another major and only warns about the minor),
              mmcv is built with its CUDA ops for the GPUs' architectures, and with the CPU ops if
              that build fails. Otherwise it is built with CPU ops only, the GPUs hidden from the
              build (``CUDA_VISIBLE_DEVICES=`` and ``FORCE_CUDA=0``); the project then routes CUDA
              tensors of the mmcv kernels it uses to its own torch kernels
              (``projects/img2lidar/compat.py``).
spconv        exactly one build (they all provide the ``spconv`` module): :func:`choose_spconv`.
numpy         CPU machines: ``numpy<2`` (nuscenes-devkit 1.2.0 declares it). CUDA machines keep
              the numpy they have (their other packages are built against it); with numpy >= 2,
              nuscenes-devkit is installed with ``--no-deps`` (the project's use of it runs on
              numpy 2).
torchvision   never installed. One that is present is fine when it works; a broken one
              (import fails, or its C++ operators are missing because it was built for another
              torch) stops the set-up with a message saying what to do.
no registry   with a wheel folder (``IMG2LIDAR_WHEELS``, made by ``tools/prepare_gpu_wheels.sh``)
              pip reads only that folder; the OpenMMLab packages, lyft-dataset-sdk and
              nuscenes-devkit go in with ``--no-deps`` and their import-time needs
              (:data:`OFFLINE_NEEDS`) with their dependencies.
============  ===================================================================================

Command lines::

    python projects/img2lidar/setup_plan.py shell --python python3 --venv .venv   # probe, plan
    python projects/img2lidar/setup_plan.py spconv --cuda 1 --python 3.12         # spconv-cu126==2.3.8
    python projects/img2lidar/setup_plan.py torchvision                           # verdict, exit 1 if broken
    python projects/img2lidar/setup_plan.py offline                               # tools/prepare_gpu_wheels.sh
"""
import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

# ---------------------------------------------------------------------------------------------
# pins: the one place that holds them
# ---------------------------------------------------------------------------------------------
#: torch on CPU machines (the local CPU wheel); CUDA machines keep their own torch
TORCH = 'torch==2.13.0'
MMCV = 'mmcv==2.1.0'
MMENGINE = 'mmengine==0.10.7'
MMDET = 'mmdet==3.3.0'
#: installed with --no-deps: its declared dependencies pull open3d (about 900 MB)
MMDET3D = 'mmdet3d==1.4.0'
NUSCENES_DEVKIT = 'nuscenes-devkit==1.2.0'
#: CLIP and the ViT teachers
TRANSFORMERS = 'transformers==5.23.0'
#: nuscenes-devkit 1.2.0 declares numpy < 2
NUMPY_BELOW_2 = 'numpy<2'
#: mmcv 2.1.0's setup.py imports pkg_resources, which setuptools 81 dropped
SETUPTOOLS = 'setuptools<81'
#: the spconv CPU build
CPU_BUILD = 'spconv==2.3.8'
#: spconv CUDA builds in order of preference (the design's pin first), with the CPython minor
#: versions that have wheels. Wheel tags measured on 2026-11-21 with ``pip install --dry-run
#: --no-deps --only-binary=:all: --python-version X.Y --platform manylinux_2_28_x86_64
#: --platform manylinux2014_x86_64``. CUDA 12 builds run on CUDA 12 and 13 drivers (NVIDIA
#: drivers are backward compatible with older CUDA runtimes).
CUDA_BUILDS: Tuple[Tuple[str, Tuple[int, ...]], ...] = (
    ('spconv-cu120==2.3.6', (8, 9, 10, 11)),
    ('spconv-cu126==2.3.8', (10, 11, 12, 13)),
)
#: nuscenes-devkit 1.2.0's declared dependencies except numpy (installed by hand when it goes in
#: with --no-deps next to numpy >= 2)
NUSCENES_DEVKIT_NEEDS = ('cachetools', 'descartes', 'fire', 'matplotlib>=3.6.0',
                         'opencv-python-headless>=4.5.4.58', 'Pillow>6.2.1', 'pyquaternion>=0.9.5',
                         'scikit-learn', 'scipy', 'Shapely~=2.0.3', 'tqdm', 'parameterized',
                         'pycocotools>=2.0.1')
#: installed with --no-deps where no registry is reachable (their declared dependencies include
#: opencv-python, numpy < 2, plotly, flake8, black and pytest, none of which they import)
OFFLINE_NO_DEPS = (MMENGINE, MMDET, NUSCENES_DEVKIT, 'lyft-dataset-sdk')
#: what the OpenMMLab stack, nuscenes-devkit, lyft-dataset-sdk and spconv import (measured by
#: importing the plugin, registering mmdet3d's modules and training a step), minus the packages
#: themselves; installed with their dependencies from the wheel folder where no registry is
#: reachable. mmengine's build-time needs for mmcv come first.
OFFLINE_MMCV_BUILD_NEEDS = ('addict', 'packaging', 'pyyaml', 'yapf')
OFFLINE_NEEDS = OFFLINE_MMCV_BUILD_NEEDS + (
    'rich', 'termcolor', 'matplotlib', 'pycocotools', 'shapely', 'six', 'terminaltables', 'scipy',
    'tqdm', 'pyquaternion', 'cachetools', 'trimesh', 'plyfile', 'numba', 'scikit-image', 'pandas',
    'networkx', 'transformers', 'zlib-ng',
    # `import nuscenes` imports sklearn.metrics; mmdet3d's nuScenes metric imports nuscenes when
    # mmdet3d registers its modules
    'scikit-learn')

#: the CUDA machine without registry that tools/prepare_gpu_wheels.sh prepares a wheel folder
#: for (the GPU machine that is sometimes lent): CPython 3.12, manylinux x86_64, CUDA 13 driver
OFFLINE_TARGET_PYTHON = '3.12'
OFFLINE_TARGET_PLATFORMS = ('manylinux_2_28_x86_64', 'manylinux_2_17_x86_64',
                            'manylinux2014_x86_64')
#: what that machine already has (and therefore is not carried): torch, torchvision, numpy,
#: transformers, pandas, opencv-python-headless, scikit-image, numba, timm and their
#: dependencies
OFFLINE_TARGET_HAS = (
    'torch', 'torchvision', 'numpy', 'transformers', 'pandas', 'opencv-python-headless',
    'scikit-image', 'numba', 'timm', 'pillow', 'scipy', 'networkx', 'imageio', 'tifffile',
    'lazy-loader', 'llvmlite', 'python-dateutil', 'six', 'tzdata', 'pyyaml', 'packaging', 'tqdm',
    'regex', 'safetensors', 'tokenizers', 'huggingface-hub', 'filelock', 'fsspec',
    'typing-extensions', 'sympy', 'mpmath', 'jinja2', 'markupsafe')


def offline_wheel_seeds(python: Tuple[int, int] = (3, 12)) -> Dict[str, Tuple[str, ...]]:
    """What a wheel folder for a CUDA machine without registry starts from.

    Returns:
        dict: ``no_deps`` (installed with --no-deps: their dependencies are not followed) and
        ``deps`` (their dependencies are followed, minus :data:`OFFLINE_TARGET_HAS`); the mmcv
        sdist is separate (:data:`MMCV`).
    """
    return dict(no_deps=OFFLINE_NO_DEPS + (MMDET3D, ),
                deps=(SETUPTOOLS, 'wheel', 'ninja') + OFFLINE_NEEDS +
                (choose_spconv(python, True), 'pytest'))


#: torchvision states a probe can find
TORCHVISION_STATES = ('absent', 'matching', 'broken')
#: mmcv build kinds
MMCV_KINDS = ('cuda', 'cpu')


# ---------------------------------------------------------------------------------------------
# the described machine and its plan
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Machine:
    """What the set-up needs to know about a machine.

    Attributes:
        python (tuple[int, int]): The Python (major, minor) the venv runs.
        cuda (bool): A CUDA GPU is visible and the installed torch can use it.
        torch_cuda (str, optional): ``torch.version.cuda`` of the installed torch ('13.0').
        nvcc (str, optional): Release ('X.Y') of the nvcc that torch's extension builder finds
            (``$CUDA_HOME/bin/nvcc``); None when there is none.
        gpu_archs (tuple[str, ...]): Compute capabilities of the visible GPUs ('9.0', ...).
        numpy (str, optional): The numpy version the venv sees; None when absent.
        torchvision (str): 'absent', 'matching' (imports, its C++ operators are registered) or
            'broken'.
        torchvision_error (str): The failure, for a broken torchvision.
        registry (bool): A package registry is reachable; False when pip reads only a wheel
            folder.
        gpu_without_torch (bool): nvidia-smi sees a GPU but no CUDA torch is installed.
    """
    python: Tuple[int, int]
    cuda: bool = False
    torch_cuda: Optional[str] = None
    nvcc: Optional[str] = None
    gpu_archs: Tuple[str, ...] = ()
    numpy: Optional[str] = None
    torchvision: str = 'absent'
    torchvision_error: str = ''
    registry: bool = True
    gpu_without_torch: bool = False

    def describe(self) -> str:
        """One line for the set-up log."""
        tv = self.torchvision + (f' ({self.torchvision_error})' if self.torchvision_error else '')
        return (f'Python {self.python[0]}.{self.python[1]}; CUDA GPU '
                f'{"yes (" + ", ".join(self.gpu_archs) + ")" if self.cuda else "no"}; torch CUDA '
                f'{self.torch_cuda or "-"}; nvcc {self.nvcc or "absent"}; numpy '
                f'{self.numpy or "absent"}; torchvision {tv}; '
                f'{"registry" if self.registry else "wheel folder only"}')


@dataclass(frozen=True)
class MmcvBuild:
    """How to build mmcv: the kinds to try in order, each with its environment.

    Attributes:
        kinds (tuple[str, ...]): 'cuda' and/or 'cpu', tried in this order (a failed CUDA build
            falls back to the CPU ops).
        env (dict[str, dict[str, str]]): Build environment per kind.
        cache_tag (dict[str, str]): Suffix of the wheel cache folder per kind; '' for the CPU
            ops, so that the cache name of CPU machines is unchanged.
        reason (str): Why these kinds.
    """
    kinds: Tuple[str, ...]
    env: Dict[str, Dict[str, str]]
    cache_tag: Dict[str, str]
    reason: str


@dataclass(frozen=True)
class PipPhase:
    """One install phase: requirements that go in with ``--no-deps``, then the rest with their
    dependencies."""
    no_deps: Tuple[str, ...] = ()
    deps: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """What to install on a machine, and how.

    Attributes:
        machine (Machine): The described machine.
        torch (str): The requirement to install, or '' to reuse the installed CUDA torch.
        system_site_packages (bool): The venv sees the system site-packages.
        numpy (str): The numpy constraint every pip call runs under.
        bootstrap (tuple[str, ...]): Installed (``--upgrade``) into a new venv first.
        mmcv_build_needs (PipPhase): Installed before mmcv is built.
        mmcv (MmcvBuild): The mmcv build.
        stack (PipPhase): The OpenMMLab stack, nuscenes-devkit, transformers and mmdet3d's
            runtime needs (mmdet3d itself goes in later, with ``--no-deps``).
        spconv (str): The spconv requirement.
        spconv_others (tuple[str, ...]): The other spconv builds, uninstalled first.
        mmdet3d (str): mmdet3d's requirement (installed with ``--no-deps``).
        torchvision_ok (bool): The set-up may go on.
        torchvision_message (str): What was found, and what to do when it is broken.
        notes (tuple[str, ...]): Remarks for the set-up log.
    """
    machine: Machine
    torch: str
    system_site_packages: bool
    numpy: str
    bootstrap: Tuple[str, ...]
    mmcv_build_needs: PipPhase
    mmcv: MmcvBuild
    stack: PipPhase
    spconv: str
    spconv_others: Tuple[str, ...]
    mmdet3d: str
    torchvision_ok: bool
    torchvision_message: str
    notes: Tuple[str, ...] = field(default=())


# ---------------------------------------------------------------------------------------------
# decisions (pure functions of a described machine)
# ---------------------------------------------------------------------------------------------
def choose_spconv(python: Tuple[int, int], cuda: bool) -> str:
    """The spconv requirement to install.

    Args:
        python (tuple[int, int]): The running Python's (major, minor).
        cuda (bool): Whether the machine has a CUDA GPU (and a CUDA torch).

    Returns:
        str: A pip requirement, e.g. ``'spconv-cu120==2.3.6'``.

    Raises:
        ValueError: No CUDA build has a wheel for this Python.
    """
    if not cuda:
        return CPU_BUILD
    major, minor = python
    for requirement, minors in CUDA_BUILDS:
        if major == 3 and minor in minors:
            return requirement
    raise ValueError(f'no spconv CUDA build has a wheel for Python {major}.{minor}; builds: '
                     f'{[(r, [f"3.{m}" for m in ms]) for r, ms in CUDA_BUILDS]}')


def other_builds(requirement: str) -> List[str]:
    """The spconv package names to uninstall before installing ``requirement`` (never two
    builds at once)."""
    names = ['spconv'] + [r.split('==')[0] for r, _ in CUDA_BUILDS]
    return [n for n in names if n != requirement.split('==')[0]]


def _major_minor(version: str) -> Tuple[int, int]:
    major, minor = (int(v) for v in re.findall(r'\d+', version)[:2])
    return major, minor


def nvcc_verdict(machine: Machine) -> Tuple[bool, str]:
    """Whether mmcv's CUDA ops can be built on ``machine``, and why (not).

    torch's extension builder (``torch.utils.cpp_extension._check_cuda_version``) raises when
    nvcc's CUDA major version differs from ``torch.version.cuda`` and only warns when the minor
    differs, so the same major version is what "compatible" means here.
    """
    if not machine.cuda:
        return False, 'no usable CUDA GPU'
    if not machine.torch_cuda:
        return False, 'the installed torch is not a CUDA build'
    if not machine.nvcc:
        return False, 'no nvcc (torch\'s CUDA_HOME has none)'
    nvcc, torch_cuda = _major_minor(machine.nvcc), _major_minor(machine.torch_cuda)
    if nvcc[0] != torch_cuda[0]:
        return False, (f'nvcc {machine.nvcc} cannot build for torch\'s CUDA {machine.torch_cuda} '
                       '(torch\'s extension builder needs the same major version)')
    if nvcc != torch_cuda:
        return True, (f'nvcc {machine.nvcc} and torch\'s CUDA {machine.torch_cuda} share the '
                      'major version (torch only warns about the minor)')
    return True, f'nvcc {machine.nvcc} matches torch\'s CUDA {machine.torch_cuda}'


def mmcv_build_env(kind: str, gpu_archs: Sequence[str] = ()) -> Dict[str, str]:
    """The environment of ``pip wheel mmcv`` for a build kind.

    Args:
        kind (str): 'cpu' (CPU ops only; the GPUs are hidden from mmcv's setup.py, which would
            otherwise compile its CUDA kernels whenever ``torch.cuda.is_available()``) or
            'cuda' (CPU and CUDA ops, for ``gpu_archs``).
        gpu_archs (Sequence[str]): Compute capabilities to compile for ('9.0'); all of torch's
            defaults when empty.

    Returns:
        dict[str, str]: Variables to set (an empty value sets the variable empty).
    """
    env = {'MMCV_WITH_OPS': '1', 'CFLAGS': '-g0', 'CXXFLAGS': '-g0'}
    if kind == 'cpu':
        env.update(FORCE_CUDA='0', CUDA_VISIBLE_DEVICES='')
    elif kind == 'cuda':
        env.update(FORCE_CUDA='1')
        if gpu_archs:
            env['TORCH_CUDA_ARCH_LIST'] = ';'.join(sorted(gpu_archs))
    else:
        raise ValueError(f'mmcv build kind must be one of {MMCV_KINDS}, got {kind!r}')
    return env


def mmcv_cache_tag(kind: str, nvcc: Optional[str] = None, gpu_archs: Sequence[str] = ()) -> str:
    """Suffix of the mmcv wheel's cache folder for a build kind: '' for the CPU ops (the name
    CPU machines have always used), ``-cuda<nvcc>-sm<archs>`` for the CUDA ops."""
    if kind == 'cpu':
        return ''
    archs = '+'.join(a.replace('.', '') for a in sorted(gpu_archs)) or 'default'
    return f'-cuda{nvcc}-sm{archs}'


def mmcv_cache_name(torch_version: str, python: Tuple[int, int], kind: str,
                    nvcc: Optional[str] = None, gpu_archs: Sequence[str] = ()) -> str:
    """The folder, under ``$IMG2LIDAR_CACHE/wheels``, that holds a built mmcv wheel.

    Args:
        torch_version (str): ``torch.__version__`` ('2.13.0+cpu').
        python (tuple[int, int]): The venv's Python.
        kind (str): The build kind.
        nvcc (str, optional): nvcc's release (CUDA kind).
        gpu_archs (Sequence[str]): The architectures compiled for (CUDA kind).

    Returns:
        str: E.g. ``mmcv-2.1.0-torch2.13.0+cpu-cp311`` (CPU ops; unchanged from earlier set-ups).
    """
    version = MMCV.split('==')[1]
    return (f'mmcv-{version}-torch{torch_version}-cp{python[0]}{python[1]}'
            f'{mmcv_cache_tag(kind, nvcc, gpu_archs)}')


def choose_mmcv_build(machine: Machine, request: str = 'auto') -> MmcvBuild:
    """The mmcv build for ``machine``.

    Args:
        machine (Machine): The described machine.
        request (str): 'auto' (decide), 'cpu' or 'cuda' (``IMG2LIDAR_MMCV_BUILD``).

    Returns:
        MmcvBuild: The kinds to try, their environments and cache tags.

    Raises:
        ValueError: 'cuda' requested where it cannot be built, or an unknown request.
    """
    usable, why = nvcc_verdict(machine)
    if request == 'auto':
        kinds: Tuple[str, ...] = ('cuda', 'cpu') if usable else ('cpu', )
        reason = (f'{why}: CUDA ops (CPU ops if that build fails)' if usable else
                  f'{why}: CPU ops' + (' (GPUs hidden from the build); CUDA tensors of mmcv\'s '
                                       'kernels use the project\'s torch kernels'
                                       if machine.cuda else ''))
    elif request == 'cpu':
        kinds, reason = ('cpu', ), 'CPU ops requested (IMG2LIDAR_MMCV_BUILD=cpu)'
    elif request == 'cuda':
        if not usable:
            raise ValueError(f'IMG2LIDAR_MMCV_BUILD=cuda, but mmcv\'s CUDA ops cannot be built '
                             f'here: {why}')
        kinds, reason = ('cuda', ), f'CUDA ops requested (IMG2LIDAR_MMCV_BUILD=cuda); {why}'
    else:
        raise ValueError(f'IMG2LIDAR_MMCV_BUILD must be auto, cpu or cuda, got {request!r}')
    return MmcvBuild(
        kinds=kinds,
        env={k: mmcv_build_env(k, machine.gpu_archs) for k in kinds},
        cache_tag={k: mmcv_cache_tag(k, machine.nvcc, machine.gpu_archs) for k in kinds},
        reason=reason)


def torchvision_verdict(machine: Machine) -> Tuple[bool, str]:
    """Whether the set-up may go on with the torchvision the venv sees, and the message."""
    if machine.torchvision == 'absent':
        return True, 'torchvision: not installed (nothing in the stack needs it)'
    if machine.torchvision == 'matching':
        return True, 'torchvision: installed and working (its C++ operators are registered)'
    if machine.torchvision == 'broken':
        return False, (
            f'torchvision is installed but broken: {machine.torchvision_error}. It was built '
            'for another torch (or is damaged). Nothing in this project needs it: remove it '
            '(python -m pip uninstall torchvision), or install the torchvision release built '
            'for the installed torch (same CUDA build), then run tools/setup_env.sh again.')
    raise ValueError(f'torchvision state must be one of {TORCHVISION_STATES}, '
                     f'got {machine.torchvision!r}')


def choose_numpy(machine: Machine) -> str:
    """The numpy constraint: ``numpy<2`` on CPU machines (an isolated venv) and on CUDA
    machines without numpy; a CUDA machine's own numpy otherwise (its packages are built
    against it)."""
    if machine.cuda and machine.numpy:
        return f'numpy=={machine.numpy}'
    return NUMPY_BELOW_2


def _numpy_2(constraint: str) -> bool:
    return constraint.startswith('numpy==') and _major_minor(constraint[7:])[0] >= 2


def choose_stack(machine: Machine, numpy: str) -> Tuple[PipPhase, PipPhase]:
    """mmcv's build-time needs and the stack (see :class:`Plan`)."""
    runtime = '-r ' + os.path.join(repo_root(), 'requirements', 'runtime.txt')
    if not machine.registry:
        return (PipPhase(no_deps=(MMENGINE, ), deps=OFFLINE_MMCV_BUILD_NEEDS),
                PipPhase(no_deps=OFFLINE_NO_DEPS, deps=OFFLINE_NEEDS))
    build_needs = PipPhase(deps=('addict', 'packaging', numpy, 'pyyaml', 'yapf', MMENGINE))
    if _numpy_2(numpy):
        return build_needs, PipPhase(
            no_deps=(NUSCENES_DEVKIT, ),
            deps=(runtime, MMENGINE, MMDET, numpy, TRANSFORMERS) + NUSCENES_DEVKIT_NEEDS)
    return build_needs, PipPhase(deps=(runtime, MMENGINE, MMDET, NUSCENES_DEVKIT, numpy,
                                       TRANSFORMERS))


def make_plan(machine: Machine, mmcv_request: str = 'auto') -> Plan:
    """The set-up plan of a described machine.

    Args:
        machine (Machine): The machine.
        mmcv_request (str): 'auto', 'cpu' or 'cuda' (``IMG2LIDAR_MMCV_BUILD``).

    Returns:
        Plan: What to install and how.

    Raises:
        ValueError: No spconv build for this Python with CUDA, or an impossible mmcv request.
    """
    numpy = choose_numpy(machine)
    bootstrap = (('pip', ) if machine.registry else ()) + (SETUPTOOLS, 'wheel', 'ninja')
    if not (machine.cuda and machine.numpy):
        bootstrap += (numpy, )
    build_needs, stack = choose_stack(machine, numpy)
    spconv = choose_spconv(machine.python, machine.cuda)
    ok, message = torchvision_verdict(machine)
    notes = ()
    if machine.gpu_without_torch:
        notes = ('nvidia-smi sees a GPU, but the Python has no CUDA torch: CPU set-up (install '
                 'a CUDA torch first to set up for the GPU)', )
    return Plan(machine=machine,
                torch='' if machine.cuda else TORCH,
                system_site_packages=machine.cuda,
                numpy=numpy,
                bootstrap=bootstrap,
                mmcv_build_needs=build_needs,
                mmcv=choose_mmcv_build(machine, mmcv_request),
                stack=stack,
                spconv=spconv,
                spconv_others=tuple(other_builds(spconv)),
                mmdet3d=MMDET3D,
                torchvision_ok=ok,
                torchvision_message=message,
                notes=notes)


# ---------------------------------------------------------------------------------------------
# probing a real machine (subprocesses of the Pythons involved; nothing is imported here)
# ---------------------------------------------------------------------------------------------
def repo_root() -> str:
    """The checkout this file belongs to."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


_TORCH_PROBE = r'''
import json, torch
out = dict(cuda=bool(torch.cuda.is_available()), torch_cuda=torch.version.cuda, archs=[],
           cuda_home=None)
if out['cuda']:
    out['archs'] = sorted({'%d.%d' % torch.cuda.get_device_capability(i)
                           for i in range(torch.cuda.device_count())})
    from torch.utils.cpp_extension import CUDA_HOME
    out['cuda_home'] = CUDA_HOME
print(json.dumps(out))
'''

_PACKAGES_PROBE = r'''
import importlib.metadata as md, importlib.util, json
out = dict(numpy=None, torchvision='absent', torchvision_error='')
try:
    out['numpy'] = md.version('numpy')
except md.PackageNotFoundError:
    pass
if importlib.util.find_spec('torchvision') is not None:
    try:
        import torch, torchvision
        torch.ops.torchvision.nms  # absent when torchvision's C++ operators did not load
        out['torchvision'] = 'matching'
    except Exception as exc:  # any failure to import or to find the operators
        where = importlib.util.find_spec('torchvision').submodule_search_locations
        out['torchvision'] = 'broken'
        out['torchvision_error'] = (f'{type(exc).__name__}: {exc}'.splitlines()[0][:300] +
                                    f' ({list(where or [])[0] if where else "?"})')
print(json.dumps(out))
'''


def _run_json(python: str, code: str) -> Optional[dict]:
    """Run ``code`` in ``python``; its last stdout line as JSON, or None when it fails."""
    try:
        res = subprocess.run([python, '-c', code], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0 or not res.stdout.strip():
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def nvidia_gpu_visible() -> bool:
    """``nvidia-smi -L`` lists a GPU."""
    if shutil.which('nvidia-smi') is None:
        return False
    try:
        res = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return res.returncode == 0 and 'GPU' in res.stdout


def parse_nvcc_release(text: str) -> Optional[str]:
    """'X.Y' from ``nvcc --version`` output (torch parses it the same way)."""
    match = re.search(r'release (\d+[.]\d+)', text)
    return match.group(1) if match else None


def nvcc_release(cuda_home: Optional[str]) -> Optional[str]:
    """The release of ``$CUDA_HOME/bin/nvcc``, or None."""
    if not cuda_home:
        return None
    nvcc = os.path.join(cuda_home, 'bin', 'nvcc')
    try:
        res = subprocess.run([nvcc, '--version'], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvcc_release(res.stdout) if res.returncode == 0 else None


def python_version(python: str) -> Tuple[int, int]:
    """(major, minor) of another interpreter."""
    out = subprocess.run([python, '-c', 'import sys; print(*sys.version_info[:2])'],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    major, minor = out.split()
    return int(major), int(minor)


def probe_machine(python: str, venv_python: Optional[str] = None,
                  registry: bool = True) -> Machine:
    """Describe this machine.

    Args:
        python (str): The interpreter the venv is (or will be) created from.
        venv_python (str, optional): The venv's interpreter when the venv exists.
        registry (bool): Whether a package registry is used (False with a wheel folder).

    Returns:
        Machine: The description. The CUDA facts come from ``python``'s torch, probed only when
        nvidia-smi lists a GPU (fast on CPU machines); numpy and torchvision from the
        interpreter the venv sees (the venv's, or on a CUDA machine the system one).
    """
    gpu_visible = nvidia_gpu_visible()
    torch_facts = _run_json(python, _TORCH_PROBE) if gpu_visible else None
    cuda = bool(torch_facts and torch_facts['cuda'])
    gpu_without_torch = gpu_visible and not cuda
    seen_by = venv_python if venv_python and os.path.exists(venv_python) else (
        python if cuda else None)
    packages = _run_json(seen_by, _PACKAGES_PROBE) if seen_by else None
    packages = packages or dict(numpy=None, torchvision='absent', torchvision_error='')
    return Machine(
        python=python_version(venv_python if venv_python and os.path.exists(venv_python)
                              else python),
        cuda=cuda,
        torch_cuda=torch_facts['torch_cuda'] if cuda else None,
        nvcc=nvcc_release(torch_facts['cuda_home']) if cuda else None,
        gpu_archs=tuple(torch_facts['archs']) if cuda else (),
        numpy=packages['numpy'],
        torchvision=packages['torchvision'],
        torchvision_error=packages['torchvision_error'],
        registry=registry,
        gpu_without_torch=gpu_without_torch)


# ---------------------------------------------------------------------------------------------
# shell output for tools/setup_env.sh
# ---------------------------------------------------------------------------------------------
def _words(items: Sequence[str]) -> str:
    return shlex.quote(' '.join(items))


def _env_words(env: Dict[str, str]) -> str:
    return shlex.quote(' '.join(f'{k}={v}' for k, v in env.items()))


def plan_as_shell(plan: Plan) -> str:
    """The plan as ``NAME=value`` lines that ``tools/setup_env.sh`` evaluates.

    Lists are space-separated words (requirements never contain spaces).
    """
    m = plan.machine
    lines = {
        'PLAN_MACHINE': shlex.quote(m.describe()),
        'PLAN_CUDA': str(int(m.cuda)),
        'PLAN_PYTAG': f'cp{m.python[0]}{m.python[1]}',
        'PLAN_TORCH': shlex.quote(plan.torch),
        'PLAN_SYSTEM_SITE_PACKAGES': str(int(plan.system_site_packages)),
        'PLAN_NUMPY': shlex.quote(plan.numpy),
        'PLAN_BOOTSTRAP': _words(plan.bootstrap),
        'PLAN_MMCV_BUILD_NEEDS_NO_DEPS': _words(plan.mmcv_build_needs.no_deps),
        'PLAN_MMCV_BUILD_NEEDS': _words(plan.mmcv_build_needs.deps),
        'PLAN_MMCV': shlex.quote(MMCV),
        'PLAN_MMCV_VERSION': shlex.quote(MMCV.split('==')[1]),
        'PLAN_MMCV_KINDS': _words(plan.mmcv.kinds),
        'PLAN_MMCV_REASON': shlex.quote(plan.mmcv.reason),
        'PLAN_STACK_NO_DEPS': _words(plan.stack.no_deps),
        'PLAN_STACK': _words(plan.stack.deps),
        'PLAN_SPCONV': shlex.quote(plan.spconv),
        'PLAN_SPCONV_OTHERS': _words(plan.spconv_others),
        'PLAN_MMDET3D': shlex.quote(plan.mmdet3d),
        'PLAN_TORCHVISION_OK': str(int(plan.torchvision_ok)),
        'PLAN_TORCHVISION_MESSAGE': shlex.quote(plan.torchvision_message),
        'PLAN_NOTES': _words(plan.notes),
    }
    for kind in plan.mmcv.kinds:
        lines[f'PLAN_MMCV_ENV_{kind}'] = _env_words(plan.mmcv.env[kind])
        lines[f'PLAN_MMCV_TAG_{kind}'] = shlex.quote(plan.mmcv.cache_tag[kind])
    return '\n'.join(f'{k}={v}' for k, v in lines.items())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    shell = sub.add_parser('shell', help='probe this machine and print the plan as shell '
                                         'variables (tools/setup_env.sh)')
    shell.add_argument('--python', default=sys.executable,
                       help='interpreter the venv is created from')
    shell.add_argument('--venv', help='the venv folder (probed when it exists)')
    shell.add_argument('--wheels', help='wheel folder: no registry')
    shell.add_argument('--mmcv-build', default='auto', choices=('auto', ) + MMCV_KINDS)
    spconv = sub.add_parser('spconv', help='print the spconv build to install')
    spconv.add_argument('--cuda', type=int, choices=(0, 1), required=True)
    spconv.add_argument('--python', default=f'{sys.version_info[0]}.{sys.version_info[1]}',
                        help='X.Y (default: this interpreter)')
    spconv.add_argument('--others', action='store_true',
                        help='print the other spconv packages (to uninstall) instead')
    sub.add_parser('torchvision', help='print the torchvision verdict of this interpreter; '
                                       'exit 1 when it is broken')
    sub.add_parser('offline', help='print, as JSON, what tools/prepare_gpu_wheels.sh fetches')
    args = parser.parse_args(argv)
    if args.command == 'spconv':
        major, minor = (int(v) for v in args.python.split('.')[:2])
        requirement = choose_spconv((major, minor), bool(args.cuda))
        print(' '.join(other_builds(requirement)) if args.others else requirement)
        return 0
    if args.command == 'offline':
        target = tuple(int(v) for v in OFFLINE_TARGET_PYTHON.split('.'))
        print(json.dumps(dict(offline_wheel_seeds(target), mmcv=MMCV, has=OFFLINE_TARGET_HAS,
                              python=OFFLINE_TARGET_PYTHON,
                              platforms=OFFLINE_TARGET_PLATFORMS)))
        return 0
    if args.command == 'torchvision':
        facts = _run_json(sys.executable, _PACKAGES_PROBE) or {}
        machine = Machine(python=sys.version_info[:2], torchvision=facts.get('torchvision',
                                                                             'absent'),
                          torchvision_error=facts.get('torchvision_error', ''))
        ok, message = torchvision_verdict(machine)
        print(message)
        return 0 if ok else 1
    venv_python = os.path.join(args.venv, 'bin', 'python') if args.venv else None
    machine = probe_machine(args.python, venv_python, registry=not args.wheels)
    print(plan_as_shell(make_plan(machine, args.mmcv_build)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
