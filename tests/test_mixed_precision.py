"""Mixed precision: what ``--amp`` chooses, float32 pooling and losses under a bfloat16
autocast, and the AMP optimizer wrapper, which refuses a non-finite loss on every rank together
and leaves overflowing gradients to its loss scaler.

The AMP wrapper needs CUDA in mmengine; these CPU tests let it build (its availability check is
patched) and give it torch's CPU ``GradScaler``, so that the scaler's skip path runs too.
"""
import math

import pytest
import torch
from mmdet3d.registry import MODELS, OPTIM_WRAPPERS
from mmengine.config import Config

from projects.img2lidar.engine.launch import amp_settings, close_process_group, enable_amp
from projects.img2lidar.models import BatchPairs
from projects.img2lidar.models.superpixel_pooling import superpixel_pooling

#: unit roundoff of bfloat16 (8 significant bits): |bf16(x) - x| <= U * |x|
U = 2.0**-8


def test_amp_chooses_bf16_where_supported_and_keeps_a_loss_scaler():
    for bf16, dtype in ((True, 'bfloat16'), (False, 'float16')):
        cfg = Config(dict(optim_wrapper=dict(type='FiniteCheckOptimWrapper',
                                             optimizer=dict(type='SGD', lr=0.1))))
        enable_amp(cfg, bf16_supported=bf16)
        assert cfg.optim_wrapper.type == 'FiniteCheckAmpOptimWrapper'
        # the sparse convolutions run in float16 under any autocast: the scaler stays
        assert cfg.optim_wrapper.dtype == dtype and cfg.optim_wrapper.loss_scale == 'dynamic'
        assert amp_settings(bf16) == dict(dtype=dtype, loss_scale='dynamic')


def _one_superpixel_batch(num_pairs: int = 1000):
    """One 32x32 image that is a single superpixel, ``num_pairs`` pairs in it."""
    g = torch.Generator().manual_seed(0)
    return BatchPairs(
        point=torch.arange(num_pairs, dtype=torch.int32),
        image=torch.zeros(num_pairs, dtype=torch.int32),
        pixel=torch.randint(0, 32, (num_pairs, 2), generator=g, dtype=torch.int32),
        pair_offsets=torch.tensor([0, num_pairs]), image_offsets=torch.tensor([0, 1]),
        superpixels=torch.zeros(1, 32, 32, dtype=torch.int16),
        image_id_offsets=torch.tensor([0, 1]), num_points=num_pairs, num_images=1, num_ids=1,
        max_image_ids=1)


def _head(channels=4):
    return MODELS.build(dict(type='ImageProjectionHead', in_channels=channels,
                             out_channels=channels, project=False, scale_factor=4))


def test_pooled_sums_and_counts_are_float32_under_bf16_autocast():
    """1,000 pairs of feature 1 in one superpixel: a bfloat16 sum stops at 256 (256 + 1 rounds
    to 256), a float32 one does not, and the count is an exact integer."""
    pairs = _one_superpixel_batch()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        point_feats = torch.ones(1000, 4, dtype=torch.bfloat16)
        teacher = torch.ones(1, 4, 8, 8, dtype=torch.bfloat16)
        pooled = superpixel_pooling(point_feats, _head().pixel_features(teacher, (32, 32)),
                                    teacher, pairs)
    assert pooled.k.dtype == pooled.q.dtype == pooled.e.dtype == torch.float32
    assert torch.equal(pooled.k, torch.ones(1, 4)) and torch.equal(pooled.e, torch.ones(1, 4))
    torch.testing.assert_close(pooled.q, torch.full((1, 4), 0.5))  # unit norm of (1, 1, 1, 1)
    assert pooled.num_pairs.tolist() == [1000]


def test_pooling_of_bf16_inputs_is_within_their_rounding():
    """Pooled from bfloat16 inputs, k and e differ from the float32 pooling of the same
    values by at most the inputs' rounding: |mean(bf16(x)) - mean(x)| <= U * mean(|x|)."""
    torch.manual_seed(0)
    pairs = _one_superpixel_batch(3000)
    pairs.superpixels[0, :, 16:] = 1  # two superpixels
    pairs.image_id_offsets = torch.tensor([0, 2])
    pairs.num_ids = pairs.max_image_ids = 2
    point_feats = torch.randn(3000, 8)
    teacher = torch.rand(1, 8, 8, 8) * 100
    head = _head(8)
    exact = superpixel_pooling(point_feats, head.pixel_features(teacher, (32, 32)), teacher,
                               pairs)
    magnitude = superpixel_pooling(point_feats.abs(), head.pixel_features(teacher, (32, 32)),
                                   teacher.abs(), pairs)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        low = superpixel_pooling(point_feats.bfloat16(), head.pixel_features(
            teacher.bfloat16(), (32, 32)), teacher.bfloat16(), pairs)
    slack = 1e-6  # float32 accumulation of the means
    assert ((low.k - exact.k).abs() <= U * magnitude.k + slack).all()
    assert ((low.e - exact.e).abs() <= U * magnitude.e + slack * 100).all()
    # q: unit-norm means of normalised bilinear mixes; each input moves by U relatively, the
    # normalised vector by at most 2U
    assert ((low.q - exact.q).abs() <= 2 * U + slack).all()


LOSSES = {
    'infonce': dict(type='SuperpixelInfoNCELoss'),
    'st_cb': dict(type='SemanticallyTolerantLoss',
                  balancing=dict(type='ClassAgnosticBalancing')),
    'relational': dict(type='RelationalLoss'),
    'similarity': dict(type='SimilarityLoss'),
    'ppkt': dict(type='PPKTLoss', num_pairs=100),
}


@pytest.mark.parametrize('name', list(LOSSES))
def test_losses_compute_in_float32_under_bf16_autocast(name):
    """A loss under a bfloat16 autocast equals the float32 loss of the same input values: it
    adds no rounding of its own, so the only error is the inputs' (bounded above)."""
    torch.manual_seed(0)
    k = torch.nn.functional.normalize(torch.randn(300, 16), dim=1).bfloat16()
    q = torch.nn.functional.normalize(torch.randn(300, 16), dim=1).bfloat16()
    e = torch.rand(300, 32).bfloat16()
    head = MODELS.build(LOSSES[name])
    reference = head(k.float(), q.float(), e.float())
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = head(k, q, e)
    assert got.dtype == torch.float32 and torch.isfinite(got)
    torch.testing.assert_close(got, reference, rtol=1e-6, atol=1e-6)


# -- the AMP optimizer wrapper ----------------------------------------------------------------
def _allow_amp_on_cpu():
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp
    amp.is_cuda_available = lambda: True


def _amp_wrapper(params, on_non_finite: str):
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    wrapper = OPTIM_WRAPPERS.build(dict(type='FiniteCheckAmpOptimWrapper', optimizer=optimizer,
                                        on_non_finite=on_non_finite, dtype='bfloat16'))
    wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=2.0**10)
    return wrapper


@pytest.fixture
def amp_on_cpu(monkeypatch):
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp
    monkeypatch.setattr(amp, 'is_cuda_available', lambda: True)


def test_amp_wrapper_refuses_non_finite_losses_and_leaves_overflow_to_the_scaler(amp_on_cpu):
    w = torch.nn.Parameter(torch.ones(3))
    wrapper = _amp_wrapper([w], 'error')
    with pytest.raises(FloatingPointError, match=r'non-finite loss \(nan\)'):
        wrapper.update_params((w * float('nan')).sum())
    wrapper = _amp_wrapper([w], 'skip')
    wrapper.update_params((w * float('nan')).sum())
    assert torch.equal(w.detach(), torch.ones(3)) and w.grad is None
    assert wrapper.num_skipped == 1 and not wrapper.optimizer.state
    # a finite loss whose scaled gradient overflows: no error, the scaler skips the step and
    # halves its scale
    scale = wrapper.loss_scaler.get_scale()
    loss = (w * torch.tensor([1.0, 1e36, 1.0])).sum()
    assert torch.isfinite(loss)
    wrapper.update_params(loss)
    assert torch.equal(w.detach(), torch.ones(3)) and wrapper.num_skipped == 1
    assert wrapper.loss_scaler.get_scale() == scale / 2
    wrapper.update_params((w * w).sum())  # a finite step still steps
    assert not torch.equal(w.detach(), torch.ones(3))


def test_amp_wrapper_keeps_its_skip_count_and_scale_across_a_load(amp_on_cpu):
    w = torch.nn.Parameter(torch.ones(3))
    wrapper = _amp_wrapper([w], 'skip')
    wrapper.update_params((w * float('nan')).sum())
    wrapper.update_params((w * torch.tensor([1.0, 1e36, 1.0])).sum())  # the scaler halves
    state = wrapper.state_dict()
    assert state['num_non_finite_skipped'] == 1 and 'loss_scaler' in state
    resumed = _amp_wrapper([w], 'skip')
    resumed.load_state_dict(state)
    assert resumed.num_skipped == 1
    assert resumed.loss_scaler.get_scale() == wrapper.loss_scaler.get_scale() == 2.0**9
    resumed.update_params((w * float('nan')).sum())
    assert resumed.num_skipped == 2


def _ddp_amp_rank(rank: int, init_file: str, on_non_finite: str, out: dict) -> None:
    """One gloo process: DDP linear model, AMP wrapper, rank 1's loss NaN at the second step."""
    from datetime import timedelta

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    _allow_amp_on_cpu()
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(3, 1))
    wrapper = _amp_wrapper(model.parameters(), on_non_finite)
    events, weights = [], []
    try:
        for step in range(3):
            loss = model(torch.ones(1, 3) * (rank + 1)).sum()
            if step == 1 and rank == 1:
                loss = loss * float('nan')
            wrapper.update_params(loss)
            weights.append(model.module.weight.detach().clone())
            events.append(f'step {step}')
    except FloatingPointError as e:
        events.append(f'raised at step {step}: {e}')
    except Exception as e:  # noqa: BLE001 - what a rank left behind would see
        events.append(f'{type(e).__name__} at step {step}')
    out[rank] = (events, wrapper.num_skipped, weights)
    del model  # its reducer holds the group: released while every rank is still there
    close_process_group()


@pytest.mark.parametrize('on_non_finite', ['error', 'skip'])
def test_every_rank_takes_the_same_decision_on_a_non_finite_loss(tmp_path, on_non_finite):
    """Rank 1's loss is NaN at step 2. With 'error' both ranks raise at that step (without the
    shared decision, rank 0's scaler skipped the step on its own and rank 0 waited in the next
    all-reduce for a rank that had raised); with 'skip' both skip it and stay equal."""
    import torch.multiprocessing as mp
    manager = mp.Manager()
    out = manager.dict()
    mp.start_processes(_ddp_amp_rank, args=(str(tmp_path / 'init'), on_non_finite, out),
                       nprocs=2, join=True, start_method='fork')
    (events0, skipped0, w0), (events1, skipped1, w1) = out[0], out[1]
    if on_non_finite == 'error':
        for events in (events0, events1):
            assert events[0] == 'step 0' and events[1].startswith('raised at step 1'), events
            assert 'on rank(s) [1]' in events[1]
    else:
        assert events0 == events1 == ['step 0', 'step 1', 'step 2']
        assert skipped0 == skipped1 == 1
        assert all(torch.equal(a, b) for a, b in zip(w0, w1))
        assert torch.equal(w0[1], w0[0]) and not torch.equal(w0[2], w0[1])
        assert math.isfinite(float(w0[2].sum()))
