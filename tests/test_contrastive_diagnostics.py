"""The pretraining diagnostics of the ST and CB losses against plain-python values.

Every expected figure is computed here with python lists and loops (or numpy's quantile for
the histogram quantiles), never with the vectorised code under test.
"""
import math
from typing import List

import numpy as np
import pytest
import torch

from projects.img2lidar.models.image_lidar_distiller import diagnostic_key
from projects.img2lidar.models.losses import SemanticallyTolerantLoss, SuperpixelInfoNCELoss
from projects.img2lidar.models.losses.similarity_histogram import SimilarityHistogram

TAU = 0.2


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def _cos(a, b):
    return _dot(a, b) / math.sqrt(_dot(a, a) * _dot(b, b))


def _quantile(values, p):
    v = sorted(values)
    pos = p * (len(v) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def _order_statistic(values, p):
    """The ceil(p N)-th smallest value: the histogram's quantile lies in its bin."""
    return sorted(values)[math.ceil(p * len(values)) - 1]


def _anchor_loss(logits, i):
    return math.log(sum(math.exp(z) for z in logits)) - logits[i]


def _inputs(m: int = 9, seed: int = 0):
    g = np.random.default_rng(seed)
    k = g.normal(size=(m, 4))
    q = g.normal(size=(m, 4))
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    e = np.abs(g.normal(size=(m, 6)))  # post-ReLU like: cosines in [0, 1]
    e[1] = e[0] * 2.0  # a duplicate direction: s01 = 1
    return k.tolist(), q.tolist(), e.tolist()


def _expected(k: List[list], q: List[list], e: List[list], min_quantile: float = 0.2,
              threshold: float = 0.6) -> dict:
    """The figures written out for ST (quantile form, zero logits) + CB, one loop per anchor."""
    m = len(k)
    s = [[min(max(_cos(e[i], e[j]), 0.0), 1.0) for j in range(m)] for i in range(m)]
    off = [s[i][j] for i in range(m) for j in range(m) if i != j]
    shares, st_losses, plain = [], [], []
    for i in range(m):
        w = [1.0 - x for x in s[i]]
        thr = _quantile(w, min_quantile)
        masked = [j != i and (w[j] < thr or w[j] == 0.0) for j in range(m)]
        shares.append(sum(masked) / (m - 1))
        z = [_dot(k[i], q[j]) / TAU for j in range(m)]
        st_losses.append(_anchor_loss([0.0 if masked[j] else z[j] for j in range(m)], i))
        plain.append(_anchor_loss(z, i))
    votes = [sum(x for x in s[i] if x >= threshold) for i in range(m)]
    lo, hi = min(votes), max(votes)
    cw = [1.0 - (v - lo) / (hi - lo) for v in votes]
    pos = [_dot(k[i], q[i]) for i in range(m)]
    neg = [_dot(k[i], q[j]) for i in range(m) for j in range(m) if i != j]
    return dict(
        cos_mean=sum(off) / len(off), cos_q10=_order_statistic(off, 0.1),
        cos_q50=_order_statistic(off, 0.5), cos_q90=_order_statistic(off, 0.9),
        st_masked_mean=sum(shares) / m, st_masked_min=min(shares), st_masked_max=max(shares),
        cb_w_mean=sum(cw) / m, cb_ess=sum(cw) ** 2 / sum(x * x for x in cw) / m,
        cb_w_max_min=1e6 if min(cw) == 0 else max(cw) / min(cw),
        pos_sim=sum(pos) / m, neg_sim=sum(neg) / len(neg), nce=sum(plain) / m,
        nce_st=sum(st_losses) / m,
        nce_cb=sum(x * y for x, y in zip(cw, st_losses)) / sum(cw))


def _st_cb(interval: int = 1, chunk_size: int = 4, **kwargs) -> SemanticallyTolerantLoss:
    return SemanticallyTolerantLoss(
        tau=TAU, min_quantile=0.2, chunk_size=chunk_size, diagnostics_interval=interval,
        balancing=dict(type='ClassAgnosticBalancing', threshold=0.6), **kwargs)


def _t(x):
    return torch.tensor(x, dtype=torch.float32)


@pytest.mark.parametrize('chunk_size', [4, None])
def test_st_cb_figures_equal_a_hand_computation(chunk_size):
    """Every figure of ST + CB, in row chunks of 4 (9 anchors) and in one chunk."""
    k, q, e = _inputs()
    expected = _expected(k, q, e)
    terms = _st_cb(chunk_size=chunk_size).terms(_t(k), _t(q), _t(e))
    figures = {key[len('diag/'):]: v.item() for key, v in terms.items() if key != 'loss'}
    assert sorted(figures) == sorted(expected)
    for key, value in expected.items():
        # the cosine quantiles come from a 1000-bin histogram: exact to 1/1000
        tol = 1.1e-3 if key.startswith('cos_q') else 1e-5
        assert figures[key] == pytest.approx(value, abs=tol, rel=1e-5), key
    assert expected['st_masked_max'] > expected['st_masked_min']  # s01 = 1 masks one more
    # the logged loss is the optimised one, and the same as without diagnostics
    assert terms['loss'].item() == pytest.approx(expected['nce_cb'], rel=1e-5)
    assert torch.equal(terms['loss'], _st_cb(interval=0, chunk_size=chunk_size)(
        _t(k), _t(q), _t(e)))


def test_figures_of_each_configuration():
    """ST alone has no balancing figures, CB alone no masking ones (its loss is SLidR's),
    plain SLidR (no teacher features read) only the feature and loss figures."""
    k, q, e = map(_t, _inputs())
    st_only = SemanticallyTolerantLoss(tau=TAU, diagnostics_interval=1).terms(k, q, e)
    assert not any(key.startswith('diag/cb_') or key == 'diag/nce_cb' for key in st_only)
    assert 'diag/st_masked_mean' in st_only and 'diag/nce_st' in st_only
    cb_only = SuperpixelInfoNCELoss(tau=TAU, diagnostics_interval=1, balancing=dict(
        type='ClassAgnosticBalancing')).terms(k, q, e)
    assert not any(key.startswith('diag/st_') for key in cb_only)
    assert 'diag/cb_ess' in cb_only and 'diag/cos_q50' in cb_only
    plain = SuperpixelInfoNCELoss(tau=TAU, diagnostics_interval=1).terms(k, q)
    assert sorted(plain) == ['diag/nce', 'diag/neg_sim', 'diag/pos_sim', 'loss']
    assert plain['diag/nce'].item() == pytest.approx(plain['loss'].item(), rel=1e-6)


def test_figures_come_every_interval_steps_and_never_carry_a_gradient():
    k, q, e = _inputs()
    kt = _t(k).requires_grad_()
    loss = _st_cb(interval=3)
    logged = [sorted(loss.terms(kt, _t(q), _t(e))) != ['loss'] for _ in range(7)]
    assert logged == [True, False, False, True, False, False, True]
    terms = _st_cb(interval=1).terms(kt, _t(q), _t(e))
    assert all(not v.requires_grad for key, v in terms.items() if key != 'loss')
    assert terms['loss'].requires_grad
    with pytest.raises(ValueError, match='diagnostics_interval'):
        _st_cb(interval=-1)


def test_diagnostic_log_names_never_contain_loss():
    """mmengine optimises every logged value whose name contains 'loss'."""
    assert diagnostic_key('loss_st', 'diag/cos_q50') == 'diag/st/cos_q50'
    assert diagnostic_key('loss', 'diag/nce') == 'diag/head/nce'
    assert 'loss' not in diagnostic_key('my_loss_cb', 'diag/cb_ess')


def test_histogram_quantiles_on_planted_distributions():
    """Quantiles of planted values against numpy's, within one bin; the diagonal of every
    row chunk is left out exactly."""
    g = np.random.default_rng(1)
    m = 300
    values = np.concatenate([g.beta(2, 5, size=(m, m // 2)), g.uniform(0.7, 0.9, (m, m // 2))],
                            axis=1).astype(np.float32)
    np.fill_diagonal(values, 1.0)  # planted: must not count
    hist = SimilarityHistogram(bins=500)
    total = 0.0
    for a in range(0, m, 64):
        total += hist.add_rows(torch.from_numpy(values[a:a + 64]), a).item()
    off = values[~np.eye(m, dtype=bool)].astype(np.float64)
    assert hist.total.item() == off.size
    assert total == pytest.approx(off.sum(), rel=1e-9)
    qs = [0.01, 0.1, 0.5, 0.9, 0.99]
    got = hist.quantiles(qs).numpy()
    np.testing.assert_allclose(got, np.quantile(off, qs), atol=1.0 / 500 + 1e-6)
    assert got[-1] < 0.9 + 1.0 / 500  # the planted diagonal (1.0) is not in the top 1%


# -- class-agnostic balancing with a threshold adapted to the batch's similarities ---------------
def _planted_similarity(sizes=(5, 3, 1, 1), within=0.95, seed=0):
    """Clusters of the given sizes: 0.95 within a cluster, and near-uniform high similarities
    between clusters (0.6-0.8, as the demo's teacher gives), diagonal 1."""
    g = np.random.default_rng(seed)
    labels = [c for c, n in enumerate(sizes) for _ in range(n)]
    m = len(labels)
    s = np.zeros((m, m))
    for i in range(m):
        for j in range(i):
            s[i, j] = s[j, i] = within if labels[i] == labels[j] else g.uniform(0.6, 0.8)
        s[i, i] = 1.0
    return s, labels


def _min_max_weights(votes):
    lo, hi = min(votes), max(votes)
    return [1.0 - (v - lo) / (hi - lo) for v in votes]


def test_adaptive_threshold_votes_count_the_anchor_s_cluster():
    """With near-uniform similarities (all above 0.5) the fixed threshold lets every pair vote,
    so the weights follow the noise of the cross-cluster similarities; the batch quantile
    1 - (share of same-cluster pairs) lets only the same-cluster pairs vote: the weights then
    follow the cluster sizes exactly (largest cluster 0, singletons 1)."""
    from projects.img2lidar.models.losses import ClassAgnosticBalancing
    s, labels = _planted_similarity()
    m = len(labels)
    same_pairs = sum(labels[i] == labels[j] for i in range(m) for j in range(m) if i != j)
    p = 1.0 - same_pairs / (m * (m - 1))
    sizes = [labels.count(c) for c in labels]
    expected = _min_max_weights([1.0 + 0.95 * (n - 1) for n in sizes])
    adaptive = ClassAgnosticBalancing(threshold_quantile=p)(torch.tensor(s, dtype=torch.float32))
    np.testing.assert_allclose(adaptive.numpy(), expected, atol=1e-6)
    fixed = ClassAgnosticBalancing(threshold=0.5)(torch.tensor(s, dtype=torch.float32))
    expected_fixed = _min_max_weights([sum(row) for row in s.tolist()])  # every pair votes
    np.testing.assert_allclose(fixed.numpy(), expected_fixed, atol=1e-5)
    assert not np.allclose(fixed.numpy(), expected, atol=0.05)


def test_adaptive_threshold_is_the_batch_quantile_in_the_loss():
    """In the chunked loss, the batch threshold is the quantile of all off-diagonal pairs
    (not of a chunk's), and the loss equals the hand-computed weighted mean.

    9 anchors: 72 off-diagonal pairs, each value twice (s is symmetric). The 0.75 quantile's
    target, 54 = 2 x 27 pairs, fills the bin of the 27th smallest distinct value v27 exactly,
    so the threshold is that bin's upper edge: every s > v27 votes, v27 and below do not
    (the planted values keep a gap of more than one bin around v27)."""
    from projects.img2lidar.models.losses import ClassAgnosticBalancing
    k, q, e = _inputs(m=9, seed=0)
    m = len(k)
    s = [[min(max(_cos(e[i], e[j]), 0.0), 1.0) for j in range(m)] for i in range(m)]
    distinct = sorted(s[i][j] for i in range(m) for j in range(i + 1, m))
    v26, v27, v28 = distinct[25:28]
    assert v27 - v26 > 2e-3 and v28 - v27 > 2e-3  # the planted gap
    votes = [sum(x for x in s[i] if x > v27) for i in range(m)]
    w = _min_max_weights(votes)
    losses = [_anchor_loss([_dot(k[i], q[j]) / TAU for j in range(m)], i) for i in range(m)]
    expected = sum(a * b for a, b in zip(w, losses)) / sum(w)
    cb = dict(type='ClassAgnosticBalancing', threshold_quantile=0.75)
    for chunk_size in (4, None):
        loss = SuperpixelInfoNCELoss(tau=TAU, chunk_size=chunk_size, balancing=cb)
        assert loss(_t(k), _t(q), _t(e)).item() == pytest.approx(expected, rel=1e-5)
    # the fixed threshold 0.5 gives another value
    fixed = SuperpixelInfoNCELoss(tau=TAU, balancing=dict(type='ClassAgnosticBalancing'))
    assert abs(fixed(_t(k), _t(q), _t(e)).item() - expected) > 1e-3
    with pytest.raises(ValueError, match='threshold_quantile'):
        ClassAgnosticBalancing(threshold_quantile=1.5)
