"""Loss heads against hand-computed values, plus chunking, autocast and edge-case checks.

Expected values are computed here with plain python (``math`` and loops over lists), either in
closed form or by the scalar helpers below, never with the vectorised code under test.
"""
import json
import math
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import pytest
import torch
from mmdet3d.registry import MODELS

from projects.img2lidar.models.losses import (ClassAgnosticBalancing, PPKTLoss, RelationalLoss,
                                              SemanticallyTolerantLoss, SimilarityLoss,
                                              SuperpixelInfoNCELoss)
from projects.img2lidar.models.losses.utils import logsumexp_, row_quantile

TAU = 0.07
# The closed forms use tau = 0.5: with tau = 0.07 their values (~1e-6) are below float32
# resolution of logits ~14. X = exp(-1/tau) appears in all of them.
TAU_CF = 0.5
X = math.exp(-1.0 / TAU_CF)
# On the 5-superpixel fixture tau = 0.2 separates every ST variant clearly (at 0.07 the
# positives dominate and zero_logit / exclude differ by ~1e-5 only).
TAU_ST = 0.2

# ---------------------------------------------------------------------------------------------
# Plain-python references
# ---------------------------------------------------------------------------------------------
Vec = List[float]


def dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def norm(a: Sequence[float]) -> float:
    return math.sqrt(dot(a, a))


def cos(a: Sequence[float], b: Sequence[float]) -> float:
    return dot(a, b) / (norm(a) * norm(b))


def quantile_linear(values: Sequence[float], p: float) -> float:
    """numpy/torch 'linear' quantile, written out."""
    v = sorted(values)
    pos = p * (len(v) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def anchor_loss(logits: Sequence[float], i: int, excluded: Sequence[bool] = ()) -> float:
    """-log(exp(logits[i]) / sum over the non-excluded j of exp(logits[j]))."""
    excluded = list(excluded) or [False] * len(logits)
    denom = sum(math.exp(z) for z, ex in zip(logits, excluded) if not ex)
    return math.log(denom) - logits[i]


def infonce_losses(k: List[Vec], q: List[Vec], tau: float = TAU) -> List[float]:
    m = len(k)
    return [anchor_loss([dot(k[i], q[j]) / tau for j in range(m)], i) for i in range(m)]


def st_losses(k: List[Vec], q: List[Vec], e: List[Vec], tolerance: Optional[str],
              min_quantile: float, mode: str, tau: float = TAU) -> List[float]:
    """Per-anchor ST losses after dropping superpixels with an all-zero teacher feature."""
    keep = [i for i in range(len(e)) if any(x != 0 for x in e[i])]
    k, q, e = [k[i] for i in keep], [q[i] for i in keep], [e[i] for i in keep]
    m = len(k)
    out = []
    for i in range(m):
        s = [min(max(cos(e[i], e[j]), 0.0), 1.0) for j in range(m)]
        w = [1.0 - sj for sj in s]
        if tolerance == 'quantile':
            thr = quantile_linear(w, min_quantile)
            masked = [j != i and (w[j] < thr or w[j] == 0.0) for j in range(m)]
            weight = [0.0 if masked[j] else 1.0 for j in range(m)]
        elif tolerance == 'continuous':
            masked = [j != i and w[j] == 0.0 for j in range(m)]
            weight = list(w)
        else:
            masked, weight = [False] * m, [1.0] * m
        weight[i] = 1.0
        logits = [weight[j] * dot(k[i], q[j]) / tau for j in range(m)]
        excluded = masked if mode == 'exclude' else [False] * m
        out.append(anchor_loss(logits, i, excluded))
    return out


def cb_weights(e: List[Vec], threshold: float = 0.5) -> List[float]:
    m = len(e)
    votes = []
    for i in range(m):
        s = [min(max(cos(e[i], e[j]), 0.0), 1.0) for j in range(m)]
        votes.append(sum(sj for sj in s if sj >= threshold))
    lo, hi = min(votes), max(votes)
    return [1.0 - (v - lo) / (hi - lo) for v in votes]


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# Fixed tiny inputs
# ---------------------------------------------------------------------------------------------
# Five superpixels, D = 3. Teacher features (E = 3): e0 == e1 (s01 = 1, so w01 = 0 already),
# e4 has negative cosines with e0, e1, e2 (clipped to 0).
K5 = [[0.5, -0.2, 0.8], [0.1, 0.9, -0.3], [-0.6, 0.4, 0.2], [0.3, 0.3, 0.3], [0.7, -0.5, 0.1]]
Q5 = [[0.4, -0.1, 0.9], [0.2, 0.7, -0.1], [-0.5, 0.6, 0.1], [0.1, 0.2, 0.6], [0.8, -0.3, -0.2]]
E5 = [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.2, 0.3, 1.0], [-1.0, 0.2, 0.5]]

# Closed-form case: k = q = e = [[1, 0], [1, 0], [0, 1]] -> z01 = z10 = 1/tau, s01 = 1.
KQE3 = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]


def st(tau: float = TAU, **kwargs) -> SemanticallyTolerantLoss:
    return SemanticallyTolerantLoss(tau=tau, **kwargs)


# ---------------------------------------------------------------------------------------------
# SLidR InfoNCE
# ---------------------------------------------------------------------------------------------
def test_infonce_closed_form_identity():
    # k = q = I3: z_ii = 1/tau, z_ij = 0 -> l = log(exp(1/tau) + 2) - 1/tau = log(1 + 2x)
    eye = [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]
    loss = SuperpixelInfoNCELoss(tau=TAU_CF)(t(eye), t(eye))
    assert loss.item() == pytest.approx(math.log(1 + 2 * X), rel=1e-5)


def test_infonce_closed_form_duplicate_rows():
    # rows 0, 1: log(2 exp(1/tau) + 1) - 1/tau = log(2 + x); row 2: log(1 + 2x)
    expected = (2 * math.log(2 + X) + math.log(1 + 2 * X)) / 3
    loss = SuperpixelInfoNCELoss(tau=TAU_CF)(t(KQE3), t(KQE3))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_infonce_hand_value_and_loss_weight():
    expected = mean(infonce_losses(K5, Q5))
    assert SuperpixelInfoNCELoss()(t(K5), t(Q5)).item() == pytest.approx(expected, rel=1e-5)
    loss = SuperpixelInfoNCELoss(tau=0.5, loss_weight=2.0)(t(K5), t(Q5))
    assert loss.item() == pytest.approx(2.0 * mean(infonce_losses(K5, Q5, tau=0.5)), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Semantically tolerant loss
# ---------------------------------------------------------------------------------------------
def test_st_tolerance_none_equals_infonce_exactly():
    k, q, e = t(K5), t(Q5), t(E5)
    ref = SuperpixelInfoNCELoss()(k, q, e)
    assert torch.equal(st(tolerance=None)(k, q, e), ref)
    assert torch.equal(st(tolerance=None)(k, q), ref)  # e is not needed then
    cb = dict(type='ClassAgnosticBalancing', threshold=0.5)
    assert torch.equal(
        st(tolerance=None, balancing=cb)(k, q, e),
        SuperpixelInfoNCELoss(balancing=cb)(k, q, e))


@pytest.mark.parametrize('tolerance', ['quantile', 'continuous'])
def test_st_closed_form_masked_negative(tolerance):
    # s01 = 1 -> w01 = 0: the duplicate is masked in both forms (every other w is 1 or 0).
    k = q = e = t(KQE3)
    zero_logit = st(TAU_CF, tolerance=tolerance)(k, q, e).item()
    exclude = st(TAU_CF, tolerance=tolerance, masked_negatives='exclude')(k, q, e).item()
    # zero_logit: every row is log(exp(1/tau) + 1 + 1) - 1/tau
    assert zero_logit == pytest.approx(math.log(1 + 2 * X), rel=1e-5)
    # exclude: rows 0, 1 lose the masked negative: log(1 + x); row 2 unchanged
    assert exclude == pytest.approx((2 * math.log(1 + X) + math.log(1 + 2 * X)) / 3, rel=1e-5)
    infonce = SuperpixelInfoNCELoss(tau=TAU_CF)(k, q).item()
    assert len({round(v, 6) for v in (zero_logit, exclude, infonce)}) == 3


@pytest.mark.parametrize('tau', [TAU_ST, TAU])
@pytest.mark.parametrize('mode', ['zero_logit', 'exclude'])
@pytest.mark.parametrize('tolerance,min_quantile', [('quantile', 0.01), ('quantile', 0.6),
                                                    ('continuous', 0.01)])
def test_st_hand_values(tolerance, min_quantile, mode, tau):
    expected = mean(st_losses(K5, Q5, E5, tolerance, min_quantile, mode, tau=tau))
    loss = st(tau, tolerance=tolerance, min_quantile=min_quantile, masked_negatives=mode)
    value = loss(t(K5), t(Q5), t(E5)).item()
    assert value == pytest.approx(expected, rel=1e-5)
    if tau == TAU_ST:  # the tolerance changes the value: masks and weights are exercised
        infonce = SuperpixelInfoNCELoss(tau=tau)(t(K5), t(Q5)).item()
        assert abs(value - infonce) > 1e-3 * infonce


def test_st_drops_superpixel_with_zero_teacher_feature():
    k = K5 + [[0.9, 0.9, -0.9]]
    q = Q5 + [[-0.9, 0.2, 0.4]]
    e = E5 + [[0.0, 0.0, 0.0]]
    expected = mean(st_losses(K5, Q5, E5, 'quantile', 0.01, 'zero_logit', tau=TAU_ST))
    kt = t(k).requires_grad_()
    loss = st(TAU_ST)(kt, t(q), t(e))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert torch.equal(loss, st(TAU_ST)(t(K5), t(Q5), t(E5)))
    loss.backward()
    assert torch.all(kt.grad[5] == 0) and torch.any(kt.grad[:5] != 0)


def test_st_needs_teacher_features_and_validates_options():
    with pytest.raises(ValueError):
        st()(t(K5), t(Q5))
    with pytest.raises(ValueError):
        st(tolerance='bogus')
    with pytest.raises(ValueError):
        st(masked_negatives='minus_inf')


def test_row_quantile_equals_torch_quantile():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 37, generator=g)
    x[1, 5:9] = 0.25  # ties
    for p in (0.0, 0.01, 0.1, 0.5, 0.6, 0.99, 1.0):
        assert torch.equal(row_quantile(x, p), torch.quantile(x, p, dim=1))


def test_inplace_logsumexp_matches_torch():
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(3, 6, generator=g) * 50).requires_grad_()
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[0, 2:] = True  # -inf entries, as for excluded negatives
    ref = torch.logsumexp(x.masked_fill(mask, float('-inf')), dim=1)
    out = logsumexp_(x.clone().masked_fill_(mask, float('-inf')))
    torch.testing.assert_close(out, ref)
    g_out = torch.autograd.grad(out.sum(), x)[0]
    g_ref = torch.autograd.grad(ref.sum(), x)[0]
    torch.testing.assert_close(g_out, g_ref)
    assert torch.all(g_out[0, 2:] == 0)


# ---------------------------------------------------------------------------------------------
# Class-agnostic balancing
# ---------------------------------------------------------------------------------------------
def test_cb_weights_hand_values():
    weights = ClassAgnosticBalancing(threshold=0.5).weights_from_features(t(E5))
    assert weights.tolist() == pytest.approx(cb_weights(E5), abs=1e-6)
    # closed form: s = [[1,1,0],[1,1,0],[0,0,1]] -> votes [2,2,1] -> weights [0,0,1]
    assert ClassAgnosticBalancing()(t([[1, 1, 0], [1, 1, 0], [0, 0, 1.]])).tolist() == [0, 0, 1]


@pytest.mark.parametrize('tolerance', ['quantile', 'continuous', None])
def test_st_cb_hand_value(tolerance):
    w = cb_weights(E5)
    per_anchor = st_losses(K5, Q5, E5, tolerance, 0.01, 'zero_logit', tau=TAU_ST)
    expected = sum(wi * li for wi, li in zip(w, per_anchor)) / sum(w)
    loss = st(TAU_ST, tolerance=tolerance, balancing=dict(type='ClassAgnosticBalancing'))
    assert loss(t(K5), t(Q5), t(E5)).item() == pytest.approx(expected, rel=1e-5)


def test_cb_closed_form():
    # weights [0, 0, 1]: only row 2 counts, log(1 + 2x) for ST (zero_logit) and InfoNCE alike
    k = q = e = t(KQE3)
    cb = dict(type='ClassAgnosticBalancing')
    expected = math.log(1 + 2 * X)
    assert st(TAU_CF, balancing=cb)(k, q, e).item() == pytest.approx(expected, rel=1e-5)
    infonce_cb = SuperpixelInfoNCELoss(tau=TAU_CF, balancing=cb)
    assert infonce_cb(k, q, e).item() == pytest.approx(expected, rel=1e-5)


def test_cb_equal_votes_equals_unweighted_st():
    # orthogonal teacher features: every row votes 1 (its diagonal) -> all weights 1
    e = t([[1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0.5, 0], [0, 0, 0, 3.0]])
    k, q = t(K5[:4]), t(Q5[:4])
    assert ClassAgnosticBalancing().weights_from_features(e).tolist() == [1.0] * 4
    for tol in ('quantile', 'continuous'):
        plain = st(tolerance=tol)(k, q, e)
        balanced = st(tolerance=tol, balancing=dict(type='ClassAgnosticBalancing'))(k, q, e)
        assert balanced.item() == pytest.approx(plain.item(), rel=1e-6)
    # all superpixels alike (and a single superpixel): equal votes again, never NaN
    same = t([[0.3, 0.7, 0.1]] * 4)
    w = ClassAgnosticBalancing().weights_from_features(same)
    assert w.tolist() == [1.0] * 4
    one = st(balancing=dict(type='ClassAgnosticBalancing'))(t(K5[:1]), t(Q5[:1]), t(E5[:1]))
    assert one.item() == pytest.approx(0.0, abs=1e-6)


def test_cb_all_weights_zero_is_finite():
    losses = t([1.0, 2.0, 4.0]).requires_grad_()
    out = ClassAgnosticBalancing.weighted_mean(losses, torch.zeros(3))
    assert torch.isfinite(out) and out.item() == pytest.approx(7.0 / 3.0)
    out.backward()
    assert torch.all(torch.isfinite(losses.grad))
    # and the ordinary case: sum w l / sum w
    ok = ClassAgnosticBalancing.weighted_mean(t([1.0, 2.0, 4.0]), t([0.0, 0.5, 1.0]))
    assert ok.item() == pytest.approx((0.5 * 2 + 4) / 1.5)


# ---------------------------------------------------------------------------------------------
# Relational, PPKT, similarity
# ---------------------------------------------------------------------------------------------
def relational_terms(k: List[Vec], q: List[Vec]):
    m = len(k)

    def reduce(c):
        diag = sum(c[i][i] for i in range(m)) / m
        off = sum(c[i][j] for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        return diag + off

    cross = [[abs(dot(k[i], q[j]) - dot(q[i], q[j])) for j in range(m)] for i in range(m)]
    intra = [[abs(dot(k[i], k[j]) - dot(q[i], q[j])) for j in range(m)] for i in range(m)]
    return reduce(cross), reduce(intra)


def test_relational_hand_value():
    cross, intra = relational_terms(K5, Q5)
    loss = RelationalLoss(lambda_cross=0.3, lambda_intra=2.0, loss_weight=1.5)
    comps = loss.components(t(K5), t(Q5))
    assert comps['cross'].item() == pytest.approx(cross, rel=1e-5)
    assert comps['intra'].item() == pytest.approx(intra, rel=1e-5)
    assert loss(t(K5), t(Q5)).item() == pytest.approx(1.5 * (0.3 * cross + 2.0 * intra),
                                                      rel=1e-5)
    # a tiny case by hand: k = [[1,0],[0,1]], q = [[0,1],[1,0]]
    # KQ^T = [[0,1],[1,0]], QQ^T = I, KK^T = I -> C_cross = [[1,1],[1,1]] -> 1 + 1; C_intra = 0
    comps = RelationalLoss().components(t([[1, 0], [0, 1.]]), t([[0, 1], [1, 0.]]))
    assert comps['cross'].item() == pytest.approx(2.0) and comps['intra'].item() == 0.0


def test_relational_detach_target_same_value():
    k, q = t(K5).requires_grad_(), t(Q5).requires_grad_()
    plain = RelationalLoss()(k, q)
    detached = RelationalLoss(detach_target=True)(k, q)
    assert detached.item() == pytest.approx(plain.item(), rel=1e-6)
    (g_plain, ) = torch.autograd.grad(plain, q)
    (g_detached, ) = torch.autograd.grad(detached, q)
    assert not torch.allclose(g_plain, g_detached)


def test_relational_zero_when_k_equals_q():
    g = torch.Generator().manual_seed(1)
    k = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=1)
    comps = RelationalLoss().components(k, k.clone())
    assert comps['cross'].item() == pytest.approx(0.0, abs=1e-6)
    assert comps['intra'].item() == pytest.approx(0.0, abs=1e-6)


def test_ppkt_hand_value_and_sampling():
    # P <= num_pairs: every pair is used
    assert PPKTLoss(num_pairs=8)(t(K5), t(Q5)).item() == pytest.approx(
        mean(infonce_losses(K5, Q5)), rel=1e-5)
    # P > num_pairs: 3 distinct pairs drawn with the given generator
    loss = PPKTLoss(num_pairs=3)
    idx = loss.sample_pairs(5, torch.Generator().manual_seed(7)).tolist()
    assert len(idx) == 3 and len(set(idx)) == 3 and all(0 <= i < 5 for i in idx)
    expected = mean(infonce_losses([K5[i] for i in idx], [Q5[i] for i in idx]))
    value = loss(t(K5), t(Q5), generator=torch.Generator().manual_seed(7))
    assert value.item() == pytest.approx(expected, rel=1e-5)
    # a seeded loss repeats its draw; 4096 pairs by default
    a, b = PPKTLoss(num_pairs=3, seed=3), PPKTLoss(num_pairs=3, seed=3)
    assert torch.equal(a(t(K5), t(Q5)), b(t(K5), t(Q5)))
    assert PPKTLoss().num_pairs == 4096


def test_ppkt_draw_depends_on_seed_and_iteration_only():
    """The draw of an iteration is a function of (seed, iteration): the global RNG's state
    (which can differ between the processes of a distributed run) does not move it."""
    from mmengine.logging import MessageHub
    hub = MessageHub.get_current_instance()
    before = hub.get_info('iter')
    try:
        loss = PPKTLoss(num_pairs=50, seed=5)
        draws = {}
        for it in (3, 4):
            hub.update_info('iter', it)
            torch.manual_seed(it)  # whatever state the global RNG is in
            first = loss.sample_pairs(1000).tolist()
            torch.rand(123)
            assert loss.sample_pairs(1000).tolist() == first
            draws[it] = first
        assert draws[3] != draws[4]
        hub.update_info('iter', 3)
        assert PPKTLoss(num_pairs=50, seed=5).sample_pairs(1000).tolist() == draws[3]
        assert PPKTLoss(num_pairs=50, seed=6).sample_pairs(1000).tolist() != draws[3]
    finally:
        hub.update_info('iter', before)


def test_similarity_hand_value():
    expected = mean([1 - cos(K5[i], Q5[i]) for i in range(5)])
    assert SimilarityLoss()(t(K5), t(Q5)).item() == pytest.approx(expected, rel=1e-5)
    assert SimilarityLoss()(t(K5), t(K5)).item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# Properties shared by all heads
# ---------------------------------------------------------------------------------------------
CB = dict(type='ClassAgnosticBalancing', threshold=0.5)


def all_heads(chunk_size):
    return {
        'infonce': SuperpixelInfoNCELoss(chunk_size=chunk_size),
        'infonce_cb': SuperpixelInfoNCELoss(chunk_size=chunk_size, balancing=CB),
        'st_quantile': st(chunk_size=chunk_size, min_quantile=0.3),
        'st_quantile_excl': st(chunk_size=chunk_size, min_quantile=0.3,
                               masked_negatives='exclude'),
        'st_continuous': st(chunk_size=chunk_size, tolerance='continuous'),
        'st_continuous_excl_cb': st(chunk_size=chunk_size, tolerance='continuous',
                                    masked_negatives='exclude', balancing=CB),
        'st_quantile_cb': st(chunk_size=chunk_size, balancing=CB),
        'relational': RelationalLoss(chunk_size=chunk_size),
        'ppkt': PPKTLoss(chunk_size=chunk_size),
        'similarity': SimilarityLoss(),
    }


def random_inputs(m=7, d=5, e_dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.nn.functional.normalize(torch.randn(m, d, generator=g), dim=1)
    q = torch.nn.functional.normalize(torch.randn(m, d, generator=g), dim=1)
    e = torch.relu(torch.randn(m, e_dim, generator=g))
    e[3] = e[1]  # a duplicate teacher feature (w = 0) for the masked-negative paths
    e[5] = 0.0  # a superpixel without teacher feature
    return k, q, e


@pytest.mark.parametrize('name', list(all_heads(None)))
def test_chunked_equals_unchunked_with_finite_gradients(name):
    k, q, e = random_inputs()
    results = []
    for chunk_size in (2, 4096):
        kk, qq = k.clone().requires_grad_(), q.clone().requires_grad_()
        loss = all_heads(chunk_size)[name](kk, qq, e)
        loss.backward()
        assert loss.dim() == 0 and torch.isfinite(loss)
        assert torch.all(torch.isfinite(kk.grad)) and torch.all(torch.isfinite(qq.grad))
        assert kk.grad.abs().sum() > 0
        results.append((loss.detach(), kk.grad, qq.grad))
    (l1, gk1, gq1), (l2, gk2, gq2) = results
    torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gk1, gk2, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gq1, gq2, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('name', list(all_heads(None)))
def test_finite_under_bf16_autocast(name):
    k, q, e = random_inputs()
    # large logits: a bf16 exp would overflow; the heads must compute in float32
    kk = (k * 30).to(torch.bfloat16).requires_grad_()
    qq = (q * 30).to(torch.bfloat16).requires_grad_()
    head = all_heads(3)[name]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = head(kk, qq, e.to(torch.bfloat16))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.all(torch.isfinite(kk.grad.float())) and torch.all(torch.isfinite(qq.grad.float()))
    # same value as float32 on the bf16-rounded inputs, without autocast
    ref = head(kk.detach().float(), qq.detach().float(), e.to(torch.bfloat16).float())
    torch.testing.assert_close(loss.detach(), ref, rtol=1e-5, atol=1e-5)


def test_registry_builds_every_head_and_no_grad_works():
    cfgs = [
        dict(type='SuperpixelInfoNCELoss', tau=0.07),
        dict(type='SemanticallyTolerantLoss', tolerance='quantile', min_quantile=0.01,
             balancing=dict(type='ClassAgnosticBalancing', threshold=0.5)),
        dict(type='RelationalLoss', lambda_cross=1.0, lambda_intra=1.0),
        dict(type='PPKTLoss', num_pairs=4096),
        dict(type='SimilarityLoss', loss_weight=1.0),
    ]
    k, q, e = random_inputs()
    for cfg in cfgs:
        head = MODELS.build(cfg)
        with torch.no_grad():
            assert torch.isfinite(head(k, q, e))
    head = MODELS.build(cfgs[1])
    assert isinstance(head.balancing, ClassAgnosticBalancing)
    assert isinstance(MODELS.build(dict(type='ClassAgnosticBalancing')), ClassAgnosticBalancing)


def test_empty_input_gives_zero():
    k = torch.zeros(0, 4, requires_grad=True)
    for head in all_heads(None).values():
        loss = head(k, torch.zeros(0, 4), torch.zeros(0, 3))
        assert loss.item() == 0.0


# ---------------------------------------------------------------------------------------------
# Values before the losses became compositions of one InfoNCE core (issue 11)
# ---------------------------------------------------------------------------------------------
REFERENCE = Path(__file__).parent / 'fixtures' / 'loss_values_before_refactor.json'
REFERENCE_CONFIGS = {
    'infonce': dict(type='SuperpixelInfoNCELoss', chunk_size=64),
    'infonce_cb': dict(type='SuperpixelInfoNCELoss', chunk_size=64, balancing=CB),
    'st_quantile': dict(type='SemanticallyTolerantLoss', chunk_size=64),
    'st_quantile_exclude': dict(type='SemanticallyTolerantLoss', chunk_size=64, min_quantile=0.05,
                                masked_negatives='exclude'),
    'st_quantile_cb': dict(type='SemanticallyTolerantLoss', chunk_size=64, balancing=CB),
    'st_continuous': dict(type='SemanticallyTolerantLoss', chunk_size=64,
                          tolerance='continuous'),
    'st_continuous_exclude_cb': dict(type='SemanticallyTolerantLoss', chunk_size=64,
                                     tolerance='continuous', masked_negatives='exclude',
                                     balancing=CB),
    'relational': dict(type='RelationalLoss', lambda_cross=0.3, lambda_intra=2.0,
                       loss_weight=1.5, chunk_size=64),
    'relational_detach_q': dict(type='RelationalLoss', detach_q=True, chunk_size=64),
    'ppkt': dict(type='PPKTLoss', num_pairs=100, seed=5, chunk_size=64),
    'similarity': dict(type='SimilarityLoss', loss_weight=2.0),
}


def _reference_inputs(m=300, d=16, e_dim=32, seed=0):
    """numpy's Generator gives the same numbers on every machine."""
    rng = np.random.default_rng(seed)
    k = rng.standard_normal((m, d))
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    q = rng.standard_normal((m, d))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    e = np.maximum(rng.standard_normal((m, e_dim)), 0)
    e[7] = e[3]
    e[11] = 0
    probe_k, probe_q = rng.standard_normal((m, d)), rng.standard_normal((m, d))
    return [torch.tensor(a, dtype=torch.float32) for a in (k, q, e, probe_k, probe_q)]


@pytest.fixture
def iteration_zero():
    """The recorded values are those of iteration 0 (PPKT's draw depends on the iteration that
    mmengine's MessageHub holds, which earlier tests' runners leave at other values)."""
    from mmengine.logging import MessageHub
    hub = MessageHub.get_current_instance()
    before = hub.get_info('iter')
    hub.update_info('iter', 0)
    yield
    hub.update_info('iter', before)


@pytest.mark.parametrize('name', list(REFERENCE_CONFIGS))
def test_values_and_gradients_equal_those_before_the_refactor(name, iteration_zero):
    """Recorded with the code before the refactor (commit 3b8f1ee) on these inputs: the value
    and two gradient probes (sum of gradient times a fixed random tensor) of every loss. Only
    float32 rounding may differ (rtol 1e-5); on the recording machine they were bit-equal."""
    ref = json.loads(REFERENCE.read_text())[name]
    k0, q0, e, probe_k, probe_q = _reference_inputs()
    k, q = k0.clone().requires_grad_(), q0.clone().requires_grad_()
    loss = MODELS.build(REFERENCE_CONFIGS[name])(k, q, e)
    loss.backward()
    assert loss.item() == pytest.approx(ref['value'], rel=1e-5)
    assert float((k.grad * probe_k).sum()) == pytest.approx(ref['grad_k'], rel=1e-5, abs=1e-6)
    grad_q = 0.0 if q.grad is None else float((q.grad * probe_q).sum())
    assert grad_q == pytest.approx(ref['grad_q'], rel=1e-5, abs=1e-6)
