"""SyncBatchNorm1d on CPU (gloo): two processes normalise, and back-propagate, like one process
holding both batches, also when the features' mean is far larger than their spread."""
import pytest
import torch
import torch.multiprocessing as mp

from projects.img2lidar.engine.launch import close_process_group
from projects.img2lidar.models.sync_batch_norm import SyncBatchNorm1d, convert_sync_batchnorm

MEAN, SPREAD, EPS = 1000.0, 0.01, 1e-5


def _inputs():
    g = torch.Generator().manual_seed(0)
    x = MEAN + SPREAD * torch.randn(2, 64, 8, generator=g, dtype=torch.float64)
    upstream = torch.randn(2, 64, 8, generator=g, dtype=torch.float64)
    return x.float(), upstream.float()


def _rank(rank: int, init_file: str, out: dict) -> None:
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    x, upstream = _inputs()
    bn = SyncBatchNorm1d(8, eps=EPS, momentum=1.0)
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(0.5, 2.0, 8))
        bn.bias.copy_(torch.linspace(-1.0, 1.0, 8))
    xr = x[rank].clone().requires_grad_()
    y = bn(xr)
    y.backward(upstream[rank])
    out[rank] = (y.detach(), xr.grad, bn.running_mean.clone(), bn.running_var.clone(),
                 bn.weight.grad, bn.bias.grad)
    # DDP on CPU refuses modules that are torch's SyncBatchNorm; the students' norm must pass
    ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Sequential(SyncBatchNorm1d(8)))
    out[f'ddp{rank}'] = tuple(ddp(x[rank]).shape)
    del ddp  # its reducer holds the group: released while every rank is still there
    close_process_group()


def test_two_processes_normalise_like_one_in_float64(tmp_path):
    manager = mp.Manager()
    out = manager.dict()
    mp.start_processes(_rank, args=(str(tmp_path / 'init'), out), nprocs=2, join=True,
                       start_method='fork')
    assert out['ddp0'] == out['ddp1'] == (64, 8)
    x, upstream = _inputs()
    # the reference: one process, float64, the same (float32) inputs
    ref = torch.nn.BatchNorm1d(8, eps=EPS, momentum=1.0).double()
    with torch.no_grad():
        ref.weight.copy_(torch.linspace(0.5, 2.0, 8))
        ref.bias.copy_(torch.linspace(-1.0, 1.0, 8))
    x64 = x.double().reshape(128, 8).requires_grad_()
    y64 = ref(x64)
    y64.backward(upstream.double().reshape(128, 8))
    y = torch.cat([out[0][0], out[1][0]]).double()
    grad = torch.cat([out[0][1], out[1][1]]).double()
    # float32 holds the mean (about 1,000) to half an ulp (3e-5), so the normalised values
    # x_hat = (x - mean) / sigma move by at most dxh = 2 ulp / sigma; y = w x_hat + b by
    # |w| dxh; the input gradient (w / sigma)(g - mean(g) - x_hat mean(g x_hat)) by
    # |w| / sigma * dxh * 2 max|x_hat| mean|g|; the weight gradient sum(g x_hat) by
    # sum|g| dxh
    sigma = torch.sqrt(x64.var(0, unbiased=False) + EPS)
    dxh = 2 * torch.finfo(torch.float32).eps * MEAN / sigma.min().item()
    w = ref.weight.abs().max().item()
    x_hat = ((x64 - x64.mean(0)) / sigma).detach()
    g = upstream.double().reshape(128, 8)
    assert (y - y64).abs().max().item() <= w * dxh
    bound = w / sigma.min().item() * dxh * 2 * x_hat.abs().max().item() * g.abs().mean().item()
    assert (grad - x64.grad).abs().max().item() <= bound + 1e-5
    for r in range(2):  # every rank holds the same statistics
        torch.testing.assert_close(out[r][2].double(), ref.running_mean, rtol=1e-6, atol=0)
        torch.testing.assert_close(out[r][3].double(), ref.running_var, rtol=2e-3, atol=0)
    # parameter gradients summed over the ranks equal the one-process gradient
    assert ((out[0][4] + out[1][4]).double() - ref.weight.grad).abs().max().item() <= \
        g.abs().sum(0).max().item() * dxh
    torch.testing.assert_close((out[0][5] + out[1][5]).double(), ref.bias.grad, rtol=1e-5,
                               atol=1e-4)


def test_without_a_process_group_it_is_batch_norm():
    x = torch.randn(50, 6)
    plain = torch.nn.BatchNorm1d(6)
    sync = convert_sync_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm1d(6)))[0]
    assert isinstance(sync, SyncBatchNorm1d)
    torch.testing.assert_close(sync(x), plain(x))
    torch.testing.assert_close(sync.running_var, plain.running_var)
    sync.eval(), plain.eval()
    torch.testing.assert_close(sync(x), plain(x))
    assert set(sync.state_dict()) == set(plain.state_dict())


def test_it_borrows_nothing_private_from_torch():
    """No private attribute of torch's batch norms is copied onto the class (it used to
    borrow ``nn.SyncBatchNorm._check_non_zero_input_channels`` to run torch's forward on
    itself)."""
    torch_classes = (torch.nn.SyncBatchNorm, torch.nn.BatchNorm1d) + \
        torch.nn.BatchNorm1d.__mro__
    borrowed = [name for name, value in vars(SyncBatchNorm1d).items()
                if name.startswith('_') and not name.startswith('__') and
                any(value is vars(c).get(name) for c in torch_classes)]
    assert not borrowed


def test_the_cuda_path_is_torchs_sync_batch_norm_on_this_modules_state():
    """What CUDA tensors go through, run on CPU without a process group (torch's
    SyncBatchNorm is then plain batch norm): a real ``nn.SyncBatchNorm`` whose parameters and
    buffers are this module's own, so its running statistics, batch count and gradients land
    here, with no submodule or state-dict key added."""
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    bn, ref = SyncBatchNorm1d(4, momentum=0.5), torch.nn.BatchNorm1d(4, momentum=0.5)
    with torch.no_grad():
        for m in (bn, ref):
            m.weight.copy_(torch.tensor([0.5, 1.0, 1.5, 2.0]))
            m.bias.copy_(torch.tensor([-1.0, 0.0, 1.0, 2.0]))
    sync = bn.torch_sync_batch_norm()
    assert type(sync) is torch.nn.SyncBatchNorm
    y, y_ref = sync(x), ref(x)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    assert int(bn.num_batches_tracked) == 1
    (y * torch.arange(4.0)).sum().backward()
    (y_ref * torch.arange(4.0)).sum().backward()
    torch.testing.assert_close(bn.weight.grad, ref.weight.grad)
    torch.testing.assert_close(bn.bias.grad, ref.bias.grad)
    assert list(bn.modules()) == [bn]
    assert set(bn.state_dict()) == set(ref.state_dict())
    bn.double()  # replaces every tensor: the next call ties the new ones
    sync = bn.torch_sync_batch_norm()
    assert sync.weight is bn.weight and sync.running_var is bn.running_var
    bn.eval()
    assert not bn.torch_sync_batch_norm().training


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_cuda_tensors_take_torch_sync_batch_norm(monkeypatch):
    calls = []
    torch_forward = torch.nn.SyncBatchNorm.forward
    monkeypatch.setattr(torch.nn.SyncBatchNorm, 'forward',
                        lambda self, x: calls.append(x.shape) or torch_forward(self, x))
    bn = SyncBatchNorm1d(4).cuda()
    x = torch.randn(10, 4, device='cuda')
    torch.testing.assert_close(bn(x), torch.nn.functional.batch_norm(
        x, None, None, bn.weight, bn.bias, True, 0.0, bn.eps))
    assert calls == [(10, 4)]  # through torch's SyncBatchNorm forward
