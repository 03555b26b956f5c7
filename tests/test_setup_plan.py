"""What tools/setup_env.sh installs, as functions of described machines
(projects/img2lidar/setup_plan.py), and what a CPU-ops mmcv means on a CUDA machine: the mmcv
kernels the models call are routed to the project's torch kernels wherever mmcv has none."""
import ast
import dataclasses
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import REPO_ROOT, SMALL_MINKUNET, ST_CONFIG, small_pretrain_cfg, two_clouds
from projects.img2lidar import compat
from projects.img2lidar import setup_plan as sp
from projects.img2lidar.setup_plan import Machine, make_plan

PLANNER = REPO_ROOT / 'projects' / 'img2lidar' / 'setup_plan.py'
#: this CI-kind machine: no GPU (a CUDA toolkit may sit on disk)
CPU = Machine(python=(3, 11), numpy='1.26.4')
#: the GPU machine that is sometimes lent: Python 3.12.3, torch 2.11.0+cu130, numpy 2.5.2, a
#: working torchvision, nvcc, no registry
LENT_GPU = Machine(python=(3, 12), cuda=True, torch_cuda='13.0', nvcc='13.0', gpu_archs=('9.0', ),
                   numpy='2.5.2', torchvision='matching', registry=False)


def gpu(**changes) -> Machine:
    """A CUDA machine with a registry and numpy 1.26; ``changes`` override fields."""
    base = dict(python=(3, 11), cuda=True, torch_cuda='12.8', nvcc='12.8', gpu_archs=('8.0', ),
                numpy='1.26.4', torchvision='absent')
    base.update(changes)
    return Machine(**base)


# --- mmcv: which ops are built -----------------------------------------------------------------
@pytest.mark.parametrize('machine,kinds', [
    (CPU, ('cpu', )),
    (Machine(python=(3, 11), nvcc='13.0'), ('cpu', )),  # a toolkit on disk, no GPU
    (gpu(nvcc=None), ('cpu', )),  # no nvcc
    (gpu(nvcc='12.8'), ('cuda', 'cpu')),  # matching
    (gpu(nvcc='12.4'), ('cuda', 'cpu')),  # same major: torch only warns
    (gpu(nvcc='13.0'), ('cpu', )),  # another major: torch's builder refuses
    (gpu(torch_cuda='13.0', nvcc='12.6'), ('cpu', )),
    (LENT_GPU, ('cuda', 'cpu')),
])
def test_mmcv_build_kind(machine, kinds):
    build = make_plan(machine).mmcv
    assert build.kinds == kinds, build.reason
    for kind in kinds:
        env = build.env[kind]
        assert env['MMCV_WITH_OPS'] == '1' and env['CFLAGS'] == env['CXXFLAGS'] == '-g0'
    if 'cuda' in kinds:
        assert build.env['cuda']['FORCE_CUDA'] == '1'
        assert build.env['cuda']['TORCH_CUDA_ARCH_LIST'] == ';'.join(machine.gpu_archs)
        assert 'CUDA_VISIBLE_DEVICES' not in build.env['cuda']


def test_cpu_ops_hide_the_gpus_from_mmcv_setup():
    """mmcv 2.1.0's setup.py builds its CUDA kernels whenever torch.cuda.is_available(), so
    FORCE_CUDA=0 alone is not a CPU-ops build where a GPU is visible."""
    env = make_plan(gpu(nvcc=None)).mmcv.env['cpu']
    assert env['FORCE_CUDA'] == '0' and env['CUDA_VISIBLE_DEVICES'] == ''


def test_mmcv_build_requests():
    assert make_plan(LENT_GPU, 'cpu').mmcv.kinds == ('cpu', )
    assert make_plan(LENT_GPU, 'cuda').mmcv.kinds == ('cuda', )
    with pytest.raises(ValueError, match='no nvcc'):
        make_plan(gpu(nvcc=None), 'cuda')
    with pytest.raises(ValueError, match='auto, cpu or cuda'):
        make_plan(CPU, 'gpu')


def test_mmcv_wheel_cache_names():
    """The CPU-ops cache folder keeps the name earlier set-ups gave it (developers' caches stay
    valid); a CUDA build's name carries its nvcc and architectures."""
    assert sp.mmcv_cache_name('2.13.0+cpu', (3, 11), 'cpu') == 'mmcv-2.1.0-torch2.13.0+cpu-cp311'
    assert sp.mmcv_cache_name('2.11.0+cu130', (3, 12), 'cuda', '13.0', ('9.0', )) == \
        'mmcv-2.1.0-torch2.11.0+cu130-cp312-cuda13.0-sm90'
    tags = make_plan(LENT_GPU).mmcv.cache_tag
    assert tags == {'cuda': '-cuda13.0-sm90', 'cpu': ''}


def test_nvcc_release_is_parsed_as_torch_parses_it():
    text = ('nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 13.0, '
            'V13.0.88\nBuild cuda_13.0.r13.0/compiler.36424714_0')
    assert sp.parse_nvcc_release(text) == '13.0'
    assert sp.parse_nvcc_release('no version here') is None


# --- torch, numpy, spconv ----------------------------------------------------------------------
def test_cpu_machine_plan_is_the_former_set_up():
    """The CPU path installs what it always did: the torch 2.13 CPU wheel in an isolated venv,
    numpy < 2 and the former requirements/runtime.txt (plus scipy, the evaluation harness's
    confidence intervals), in one pip call."""
    plan = make_plan(CPU)
    assert (plan.torch, plan.system_site_packages, plan.numpy) == ('torch==2.13.0', False,
                                                                   'numpy<2')
    assert plan.bootstrap == ('pip', 'setuptools<81', 'wheel', 'ninja', 'numpy<2')
    assert plan.mmcv_build_needs == sp.PipPhase(deps=('addict', 'packaging', 'numpy<2', 'pyyaml',
                                                      'yapf', 'mmengine==0.10.7'))
    runtime = [line.split('#')[0].strip() for line in
               (REPO_ROOT / 'requirements' / 'runtime.txt').read_text().splitlines()]
    stack = [r for r in plan.stack.deps if not r.startswith('-r ')] + [r for r in runtime if r]
    assert plan.stack.no_deps == ()
    assert sorted(stack) == sorted([
        'mmengine==0.10.7', 'mmdet==3.3.0', 'nuscenes-devkit==1.2.0', 'numpy<2', 'numba',
        'plyfile', 'scikit-image', 'trimesh', 'networkx', 'pandas', 'lyft-dataset-sdk', 'tqdm',
        'scipy', 'transformers==5.23.0', 'zlib-ng'])
    assert (plan.spconv, plan.mmdet3d) == ('spconv==2.3.8', 'mmdet3d==1.4.0')


def test_cuda_machine_reuses_its_torch_and_numpy():
    plan = make_plan(gpu(numpy='2.5.2'))
    assert plan.torch == '' and plan.system_site_packages
    assert plan.numpy == 'numpy==2.5.2' and 'numpy<2' not in plan.bootstrap
    # nuscenes-devkit declares numpy < 2: without its deps, its other needs by hand
    assert plan.stack.no_deps == ('nuscenes-devkit==1.2.0', )
    assert 'nuscenes-devkit==1.2.0' not in plan.stack.deps and 'pyquaternion>=0.9.5' in \
        plan.stack.deps
    plan = make_plan(gpu(numpy='1.26.4'))
    assert plan.numpy == 'numpy==1.26.4' and 'nuscenes-devkit==1.2.0' in plan.stack.deps
    assert make_plan(gpu(numpy=None)).numpy == 'numpy<2'


def test_machine_without_registry_installs_from_the_wheel_folder():
    plan = make_plan(LENT_GPU)
    assert 'pip' not in plan.bootstrap
    assert set(plan.stack.no_deps) == {'mmengine==0.10.7', 'mmdet==3.3.0',
                                       'nuscenes-devkit==1.2.0', 'lyft-dataset-sdk'}
    assert plan.mmcv_build_needs.no_deps == ('mmengine==0.10.7', )
    assert plan.spconv == 'spconv-cu126==2.3.8'


@pytest.mark.parametrize('python,cuda,expected', [
    ((3, 10), False, sp.CPU_BUILD),
    ((3, 11), False, sp.CPU_BUILD),
    ((3, 12), False, sp.CPU_BUILD),
    ((3, 13), False, sp.CPU_BUILD),
    ((3, 10), True, 'spconv-cu120==2.3.6'),  # the design's pin where it has a wheel
    ((3, 11), True, 'spconv-cu120==2.3.6'),
    ((3, 12), True, 'spconv-cu126==2.3.8'),  # cu120 2.3.6 has no cp312 wheel
    ((3, 13), True, 'spconv-cu126==2.3.8'),
])
def test_spconv_build_for_the_machine(python, cuda, expected):
    plan = make_plan(gpu(python=python) if cuda else Machine(python=python))
    assert plan.spconv == sp.choose_spconv(python, cuda) == expected
    assert expected.split('==')[0] not in plan.spconv_others
    assert len(plan.spconv_others) == 2  # every other build is uninstalled first


def test_spconv_build_without_a_wheel_is_an_error():
    with pytest.raises(ValueError, match='Python 3.14'):
        make_plan(gpu(python=(3, 14)))


# --- torchvision ------------------------------------------------------------------------------
@pytest.mark.parametrize('state,ok', [('absent', True), ('matching', True), ('broken', False)])
@pytest.mark.parametrize('machine', [CPU, LENT_GPU])
def test_torchvision_is_refused_only_when_broken(machine, state, ok):
    error = 'RuntimeError: operator torchvision::nms does not exist' if state == 'broken' else ''
    plan = make_plan(dataclasses.replace(machine, torchvision=state, torchvision_error=error))
    assert plan.torchvision_ok is ok
    if not ok:
        assert error in plan.torchvision_message
        assert 'pip uninstall torchvision' in plan.torchvision_message


FAKE_TORCHVISION = {
    'matching': '''
        import torch
        torch.library.define('torchvision::nms', '(Tensor dets, Tensor scores, float t) -> Tensor')
    ''',
    'broken': '''
        raise RuntimeError('operator torchvision::nms does not exist')
    ''',
    'no_ops': '''
        import torch
    ''',
}


@pytest.mark.parametrize('kind,state', [('matching', 'matching'), ('broken', 'broken'),
                                        ('no_ops', 'broken')])
def test_torchvision_probe(tmp_path, monkeypatch, kind, state):
    """The probe imports torchvision in a subprocess and looks for its C++ operators."""
    (tmp_path / 'torchvision').mkdir()
    (tmp_path / 'torchvision' / '__init__.py').write_text(textwrap.dedent(FAKE_TORCHVISION[kind]))
    monkeypatch.setenv('PYTHONPATH', str(tmp_path))
    machine = sp.probe_machine(sys.executable, venv_python=sys.executable)
    assert machine.torchvision == state, machine.torchvision_error
    res = subprocess.run([sys.executable, str(PLANNER), 'torchvision'], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == (0 if state == 'matching' else 1), res.stdout + res.stderr


# --- the planner as tools/setup_env.sh runs it -------------------------------------------------
def test_probe_describes_this_machine():
    machine = sp.probe_machine(sys.executable, venv_python=sys.executable)
    assert machine.python == sys.version_info[:2]
    assert machine.cuda == torch.cuda.is_available()
    import numpy
    assert machine.numpy == numpy.__version__


def test_planner_runs_without_the_package():
    """tools/setup_env.sh calls the file before anything is installed (-S -I: no site-packages,
    standard library only)."""
    res = subprocess.run([sys.executable, '-S', '-I', str(PLANNER), 'spconv', '--cuda', '1',
                          '--python', '3.12'], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == 'spconv-cu126==2.3.8'
    res = subprocess.run([sys.executable, '-S', '-I', str(PLANNER), 'shell', '--python',
                          sys.executable, '--venv', '/nonexistent-venv'],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    values = dict(line.split('=', 1) for line in res.stdout.splitlines())
    assert values['PLAN_SPCONV'] == (sp.choose_spconv(sys.version_info[:2],
                                                      torch.cuda.is_available()))
    if not torch.cuda.is_available():
        assert values['PLAN_MMCV_KINDS'] == 'cpu'
        assert 'CUDA_VISIBLE_DEVICES=' in values['PLAN_MMCV_ENV_cpu']


def test_package_metadata_agrees_with_the_pins():
    """setup.py's install_requires (package metadata) repeats pins of setup_plan.py: they must
    agree."""
    tree = ast.parse((REPO_ROOT / 'setup.py').read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, 'id', '') == 'setup')
    requires = next(ast.literal_eval(k.value) for k in call.keywords
                    if k.arg == 'install_requires')
    pins = {sp.MMCV, sp.MMENGINE, sp.MMDET, sp.MMDET3D, sp.NUSCENES_DEVKIT, sp.NUMPY_BELOW_2}
    assert set(requires) <= pins, set(requires) - pins


def test_setup_script_follows_the_plan():
    """setup_env.sh holds no pins of its own (they live in setup_plan.py)."""
    script = (REPO_ROOT / 'tools' / 'setup_env.sh').read_text()
    for pin in (sp.TORCH, sp.MMCV, sp.MMENGINE, sp.MMDET3D, sp.CPU_BUILD, '2.13.0', '2.1.0',
                '0.10.7', '1.4.0'):
        assert pin not in script, pin
    assert subprocess.run(['bash', '-n', str(REPO_ROOT / 'tools' / 'setup_env.sh')]).returncode == 0


# --- mmcv kernels on devices that mmcv has none for ------------------------------------------
def _scatter_reference(feats, coors, reduce):
    """mmcv's semantics by a Python loop: sorted voxels, negative coordinates dropped."""
    keep = (coors >= 0).all(1)
    uniq = sorted({tuple(c) for c in coors[keep].tolist()})
    rows = []
    for c in uniq:
        m = keep & (coors == torch.tensor(c, dtype=coors.dtype)).all(1)
        rows.append({'max': feats[m].max(0).values, 'sum': feats[m].sum(0),
                     'mean': feats[m].mean(0)}[reduce])
    return torch.stack(rows), torch.tensor(uniq, dtype=coors.dtype)


@pytest.fixture
def fake_probe(monkeypatch):
    """Stand in for the capability probe: ``fake_probe(False)`` makes every device look like
    one mmcv has no kernel for (a CUDA device with a CPU-ops mmcv), ``fake_probe(True)`` like
    one it has."""
    calls = []

    def set_answer(answer: bool):
        def probe(kernel, device_type):
            calls.append((kernel, device_type))
            return answer
        monkeypatch.setattr(compat, 'mmcv_kernel_available', probe)
        return calls
    return set_answer


@pytest.mark.parametrize('reduce', ['max', 'sum', 'mean'])
def test_routed_dynamic_scatter_without_an_mmcv_kernel(fake_probe, reduce):
    """A device without mmcv's kernel: mmcv.ops.dynamic_scatter (as SegVFE calls it) gives
    mmcv's result through the project's torch kernel, forward and backward."""
    from mmcv.ops import dynamic_scatter
    calls = fake_probe(False)
    g = torch.Generator().manual_seed(3)
    coors = torch.randint(0, 4, (200, 3), generator=g).int()
    coors[::13, 2] = -1
    feats = torch.randn(200, 5, generator=g, dtype=torch.float64, requires_grad=True)
    out, out_coors = dynamic_scatter(feats, coors, reduce)
    ref, ref_coors = _scatter_reference(feats, coors, reduce)
    assert torch.equal(out_coors, ref_coors)
    torch.testing.assert_close(out, ref)
    probe = torch.randn(out.shape, generator=g, dtype=out.dtype)
    grad, = torch.autograd.grad((out * probe).sum(), feats)
    ref_grad, = torch.autograd.grad((ref * probe).sum(), feats)
    torch.testing.assert_close(grad, ref_grad)
    assert calls and all(c == ('dynamic_point_to_voxel_forward', 'cpu') for c in calls)


def test_routing_follows_the_probe(fake_probe):
    """A device the probe says mmcv serves goes to mmcv's compiled kernel: here the CPU, which
    mmcv 2.1 has no kernel for, so mmcv's own error proves where the call went."""
    from mmcv.ops import dynamic_scatter
    fake_probe(True)
    with pytest.raises(RuntimeError, match='not found'):
        dynamic_scatter(torch.randn(4, 2), torch.zeros(4, 3, dtype=torch.int32), 'max')


def test_probe_detects_the_missing_cpu_kernel():
    """Detected, not assumed: mmcv 2.1.0 has no CPU dynamic_point_to_voxel."""
    compat.mmcv_kernel_available.cache_clear()
    assert compat.mmcv_kernel_available('dynamic_point_to_voxel_forward', 'cpu') is False
    with pytest.raises(KeyError):
        compat.mmcv_kernel_available('nms', 'cpu')


def _record_mmcv_kernels(monkeypatch):
    """Wrap every function of the compiled mmcv._ext module with a recorder."""
    from mmcv.utils import ext_loader
    ext = ext_loader.load_ext('_ext', list(compat.MMCV_ROUTED_KERNELS))
    called = set()
    for name in dir(ext):
        fn = getattr(ext, name)
        if name.startswith('_') or not callable(fn):
            continue

        def recorder(*args, _name=name, _fn=fn, **kwargs):
            called.add(_name)
            return _fn(*args, **kwargs)
        monkeypatch.setattr(ext, name, recorder)
    return called


def test_models_call_only_the_routed_mmcv_kernels(monkeypatch, nuscenes_sweep, nuscenes_root,
                                                   tmp_path):
    """The audit behind MMCV_ROUTED_KERNELS: the students with their data preprocessors and a
    whole distiller training step call no compiled mmcv kernel but the routed ones, so a
    CPU-ops mmcv serves CUDA tensors too. Cylinder3D's voxel encoder does call them."""
    from mmdet3d.registry import DATASETS, MODELS
    from mmdet3d.structures import Det3DDataSample
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper
    called = _record_mmcv_kernels(monkeypatch)
    per_model = {}
    for name, backbone in (('minkunet34_student.py', SMALL_MINKUNET),
                           ('cylinder3d_student.py', dict(base_channels=8))):
        cfg = Config.fromfile(str(REPO_ROOT / 'configs' / '_base_' / 'models' / name))
        cfg.model.student.backbone.update(backbone)
        torch.manual_seed(0)
        student = MODELS.build(cfg.model.student)
        pre = MODELS.build(cfg.model.data_preprocessor)
        points = [p[:4000] for p in two_clouds(nuscenes_sweep)]
        data = pre(dict(inputs=dict(points=points),
                        data_samples=[Det3DDataSample() for _ in points]), True)
        before = set(called)
        feats = student(data['inputs']['voxels'],
                        [s.point2voxel_map for s in data['data_samples']])
        feats.sum().backward()
        per_model[name] = set(called) - before
    cfg = small_pretrain_cfg(str(ST_CONFIG.relative_to(REPO_ROOT)), nuscenes_root, tmp_path, 1)
    model = MODELS.build(cfg.model)
    batch = pseudo_collate([DATASETS.build(cfg.train_dataloader.dataset)[0]])
    model.train_step(batch, build_optim_wrapper(model, cfg.optim_wrapper))
    assert called <= set(compat.MMCV_ROUTED_KERNELS), called
    assert per_model['cylinder3d_student.py'] == set(compat.MMCV_ROUTED_KERNELS)
