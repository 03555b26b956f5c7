"""No silent NaN: a non-finite loss or gradient raises an error that names the batch's files, or,
where the config allows it, the step is skipped (no optimizer step at all) and counted."""
import copy

import pytest
import torch
from mmdet3d.registry import MODELS, OPTIM_WRAPPERS
from mmengine.hooks import Hook

from conftest import read_scalars, small_pretrain_cfg, values
from projects.img2lidar.engine.launch import close_process_group
from projects.img2lidar.models.losses import DistillationLoss

ST = 'configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py'


@MODELS.register_module(force=True)
class NaNAtSecondCallLoss(DistillationLoss):
    """SLidR's InfoNCE, except that its second call returns NaN."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0
        self.infonce = MODELS.build(dict(type='SuperpixelInfoNCELoss'))

    def forward(self, k, q, e=None):
        self.calls += 1
        loss = self.infonce(k, q)
        return loss * float('nan') if self.calls == 2 else loss


def _wrapper(on_non_finite):
    w = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([w], lr=0.1, momentum=0.9, weight_decay=0.1)
    return w, OPTIM_WRAPPERS.build(dict(type='FiniteCheckOptimWrapper', optimizer=optimizer,
                                        on_non_finite=on_non_finite))


def test_non_finite_gradient_of_a_finite_loss_raises_or_skips():
    w, wrapper = _wrapper('error')
    loss = (w * 0).sum().sqrt()  # 0, but its gradient is 0 / 0
    assert torch.isfinite(loss)
    with pytest.raises(FloatingPointError, match='non-finite gradients in 1 parameter tensors'):
        wrapper.update_params(loss)
    w, wrapper = _wrapper('skip')
    wrapper.update_params((w * 0).sum().sqrt())
    assert torch.equal(w.detach(), torch.ones(3)) and w.grad is None  # no step, grads zeroed
    assert wrapper.num_skipped == 1 and not wrapper.optimizer.state  # no momentum either
    wrapper.update_params((w * w).sum())  # a finite step still steps
    assert not torch.equal(w.detach(), torch.ones(3))
    with pytest.raises(ValueError, match="'error' or 'skip'"):
        _wrapper('ignore')


class RecordWeights(Hook):
    """Student weights before each iteration."""

    def __init__(self):
        self.before = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.before.append(copy.deepcopy(runner.model.student.projection.weight.detach()))


def _cfg(tmp_path, nuscenes_root, **wrapper):
    cfg = small_pretrain_cfg(ST, nuscenes_root, tmp_path, iters=3)
    cfg.model.losses = dict(loss_nan=dict(type='NaNAtSecondCallLoss'))
    cfg.optim_wrapper.update(wrapper)
    return cfg


def test_nan_loss_in_training_names_the_batch(tmp_path, nuscenes_root):
    from mmengine.runner import Runner
    runner = Runner.from_cfg(_cfg(tmp_path, nuscenes_root))
    with pytest.raises(FloatingPointError) as info:
        runner.train()
    msg = str(info.value)
    assert 'non-finite loss (nan) at iteration 2' in msg and 'loss_nan=nan' in msg
    assert 'LIDAR_TOP__1532402927647951.pcd.bin' in msg  # the batch's lidar file


def test_nan_loss_step_is_skipped_and_counted(tmp_path, nuscenes_root):
    cfg = _cfg(tmp_path, nuscenes_root, on_non_finite='skip')
    record = RecordWeights()
    cfg.custom_hooks = []
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    runner.register_hook(record)
    runner.train()
    w = [record.before[i] for i in range(3)] + [runner.model.student.projection.weight.detach()]
    assert not torch.equal(w[0], w[1])  # iteration 1 stepped
    assert torch.equal(w[1], w[2])  # iteration 2 (NaN) did not: no weight decay, no momentum
    assert not torch.equal(w[2], w[3])  # iteration 3 stepped again
    rows = read_scalars(tmp_path)
    assert values(rows, 'num_non_finite_skipped')[-1] == 1


def _ddp_rank(rank: int, init_file: str, out: dict) -> None:
    """One gloo process: a linear model under DDP, rank 1's loss NaN at the second step."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=2)
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(3, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    wrapper = OPTIM_WRAPPERS.build(dict(type='FiniteCheckOptimWrapper', optimizer=optimizer,
                                        on_non_finite='skip'))
    weights = []
    for step in range(3):
        loss = model(torch.ones(1, 3) * (rank + 1)).sum()
        if step == 1 and rank == 1:
            loss = loss * float('nan')
        wrapper.update_params(loss)
        weights.append(model.module.weight.detach().clone())
    out[rank] = (wrapper.num_skipped, torch.stack(weights))
    del model  # its reducer holds the group: released while every rank is still there
    close_process_group()


def test_a_non_finite_loss_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    """Under DDP a rank whose loss is NaN still joins the gradient all-reduce (the others would
    wait for it forever otherwise); the NaN it spreads makes every rank skip that step, so the
    replicas stay equal."""
    import torch.multiprocessing as mp
    manager = mp.Manager()
    out = manager.dict()
    mp.start_processes(_ddp_rank, args=(str(tmp_path / 'init'), out), nprocs=2, join=True,
                       start_method='fork')
    (skipped0, w0), (skipped1, w1) = out[0], out[1]
    assert skipped0 == skipped1 == 1
    assert torch.equal(w0, w1)  # the replicas took the same steps
    assert torch.equal(w0[1], w0[0]) and not torch.equal(w0[2], w0[1])  # step 2 skipped


def _ddp_bad_gradients_rank(rank: int, init_file: str, out: dict) -> None:
    """One gloo process: a linear model under DDP, a finite loss (0) whose gradient is NaN in
    both parameter tensors (weight and bias) on every rank."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=2)
    model = DistributedDataParallel(torch.nn.Linear(3, 1))
    with torch.no_grad():
        model.module.bias.zero_()
    wrapper = OPTIM_WRAPPERS.build(dict(
        type='FiniteCheckOptimWrapper', optimizer=torch.optim.SGD(model.parameters(), lr=0.1)))
    loss = model(torch.zeros(1, 3)).abs().sum().sqrt()  # sqrt(0) = 0, its gradient 1/0 * 0
    try:
        wrapper.update_params(loss)
        out[rank] = 'no error'
    except FloatingPointError as e:
        out[rank] = str(e)
    del model  # its reducer holds the group: released while every rank is still there
    close_process_group()


def test_the_non_finite_gradient_count_is_not_multiplied_by_the_ranks(tmp_path):
    """Two ranks, each with 2 non-finite gradient tensors (equal after DDP's average): the
    message says 2, not 2 x 2 (the ranks' counts were summed)."""
    import torch.multiprocessing as mp
    manager = mp.Manager()
    out = manager.dict()
    mp.start_processes(_ddp_bad_gradients_rank, args=(str(tmp_path / 'init'), out), nprocs=2,
                       join=True, start_method='fork')
    for rank in (0, 1):
        assert 'non-finite gradients in 2 parameter tensors' in out[rank], out[rank]


def test_the_skip_count_is_in_the_state_dict_and_continues_after_a_load():
    w, wrapper = _wrapper('skip')
    wrapper.update_params((w * float('nan')).sum())
    wrapper.update_params((w * w).sum())
    state = copy.deepcopy(wrapper.state_dict())
    assert state['num_non_finite_skipped'] == 1
    w2, resumed = _wrapper('skip')
    resumed.load_state_dict(state)
    assert resumed.num_skipped == 1
    resumed.update_params((w2 * float('nan')).sum())
    assert resumed.num_skipped == 2
    # a state saved before the count was kept loads, counting from 0
    del state['num_non_finite_skipped']
    _, old = _wrapper('skip')
    old.load_state_dict(state)
    assert old.num_skipped == 0


def test_the_logged_skip_count_continues_across_a_runner_resume(tmp_path, nuscenes_root):
    """Two iterations (the second NaN, skipped), a checkpoint, then a resumed run to 4
    iterations whose fourth (its loss head's second call) is NaN: the log says 2 skipped."""
    from mmengine.runner import Runner
    first = _cfg(tmp_path / 'first', nuscenes_root, on_non_finite='skip')
    first.work_dir = str(tmp_path / 'first')
    first.train_cfg.max_iters = 2
    first.default_hooks.checkpoint.interval = 2
    Runner.from_cfg(first).train()
    assert values(read_scalars(tmp_path / 'first'), 'num_non_finite_skipped')[-1] == 1
    second = _cfg(tmp_path / 'second', nuscenes_root, on_non_finite='skip')
    second.work_dir = str(tmp_path / 'second')
    second.train_cfg.max_iters = 4
    second.update(resume=True, load_from=str(tmp_path / 'first' / 'iter_2.pth'))
    runner = Runner.from_cfg(second)
    runner.train()
    assert runner.optim_wrapper.num_skipped == 2
    assert values(read_scalars(tmp_path / 'second'), 'num_non_finite_skipped')[-1] == 2


def _tensors_in(obj, path='message_hub'):
    """Paths of every tensor held anywhere in ``obj``."""
    if isinstance(obj, torch.Tensor):
        return [path]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _tensors_in(v, f'{path}.{k}')]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in _tensors_in(v, f'{path}[{i}]')]
    if hasattr(obj, '__dict__'):
        return _tensors_in(vars(obj), path)
    return []


def test_checkpoints_hold_no_tensor_of_the_step_in_their_message_hub(tmp_path, nuscenes_root):
    """The batch record that names a refused step's files lives for one step: the loss terms
    it keeps (detached) are not resumed, so no checkpoint pickles them."""
    from mmengine.runner import Runner
    cfg = small_pretrain_cfg(ST, nuscenes_root, tmp_path, iters=1)
    runner = Runner.from_cfg(cfg)
    runner.train()
    record = runner.message_hub.get_info('img2lidar_batch')
    assert record['files'] and all(not t.requires_grad for t in record['terms'].values())
    ckpt = torch.load(tmp_path / 'iter_1.pth', map_location='cpu', weights_only=False)
    hub = ckpt['message_hub']
    assert 'img2lidar_batch' not in hub['runtime_info']
    assert not _tensors_in(hub)
