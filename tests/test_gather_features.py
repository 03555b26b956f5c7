"""Gathering a step's features across processes: every field of every level, indices and ids
shifted so that they stay unique in the global batch, gradients summed back to their owners
(two gloo processes, each its own rows, against the concatenation by hand)."""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from projects.img2lidar.engine.launch import close_process_group
from projects.img2lidar.models.distillation_features import (DistillationFeatures, PairFeatures,
                                                             PooledFeatures)


def _local(rank: int):
    """Rank 0: 2 samples, 3 + 2 superpixels (ids in a range of 7), 4 pairs over 10 points and
    3 images. Rank 1: 1 sample, 4 superpixels (range 5), 3 pairs over 6 points and 2 images."""
    g = torch.Generator().manual_seed(rank)
    if rank == 0:
        m, ids, offsets, num_ids = 5, [0, 2, 3, 5, 6], [0, 3, 5], 7
        p, point, image, sp, pair_offsets, npts, nimg = 4, [0, 3, 7, 9], [0, 1, 2, 2], \
            [0, -1, 5, 6], [0, 2, 4], 10, 3
    else:
        m, ids, offsets, num_ids = 4, [0, 1, 3, 4], [0, 4], 5
        p, point, image, sp, pair_offsets, npts, nimg = 3, [1, 2, 5], [0, 1, 1], \
            [0, 3, -1], [0, 3], 6, 2
    t = torch.tensor
    sp_level = PooledFeatures(
        k=torch.randn(m, 3, generator=g).requires_grad_(), q=torch.randn(m, 3, generator=g),
        e=torch.randn(m, 2, generator=g), ids=t(ids), num_pairs=t([1] * m),
        sample_offsets=t(offsets), num_ids=num_ids)
    pair_level = PairFeatures(
        k=torch.randn(p, 3, generator=g).requires_grad_(), q=torch.randn(p, 3, generator=g),
        point=t(point), image=t(image), pixel=torch.randint(0, 9, (p, 2), generator=g),
        superpixel=t(sp), sample_offsets=t(pair_offsets), num_points=npts, num_images=nimg,
        num_ids=num_ids)
    return DistillationFeatures(superpixel=sp_level, pair=pair_level)


class _Traffic:
    """In a worker: the host reads (``tolist``, ``item``) and the collectives (name, dtype,
    input shape) of the code run while :attr:`on`."""

    COLLECTIVES = ('all_gather', 'all_gather_single', 'all_gather_into_tensor', 'all_reduce',
                   'reduce_scatter', 'reduce_scatter_single', 'reduce_scatter_tensor',
                   'all_to_all_single', 'all_to_all', 'broadcast', 'reduce')

    def __init__(self) -> None:
        self.on, self.reads, self.calls = False, 0, []
        for method in ('tolist', 'item'):
            original = getattr(torch.Tensor, method)

            def read(t, *a, _original=original, **k):
                self.reads += self.on
                return _original(t, *a, **k)

            setattr(torch.Tensor, method, read)
        for name in self.COLLECTIVES:
            original = getattr(dist, name, None)
            if original is None:
                continue

            def collective(*a, _original=original, _name=name, **k):
                if self.on:
                    data = a[1] if _name.startswith(('all_gather', 'reduce_scatter',
                                                     'all_to_all')) else a[0]
                    self.calls.append((_name, data.dtype, tuple(data.shape)))
                return _original(*a, **k)

            setattr(dist, name, collective)

    def record(self):
        self.on, self.reads, self.calls = True, 0, []
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.on = False


def _worker(rank: int, out_dir: str) -> None:
    dist.init_process_group('gloo', init_method=f'file://{out_dir}/init', rank=rank,
                            world_size=2)
    traffic = _Traffic()
    local = _local(rank)
    with traffic.record():
        g = local.gather()
    gather_reads, gather_calls = traffic.reads, traffic.calls
    # a loss on the global rows: each rank's gradient is world_size x its rows' share
    with traffic.record():
        (g.superpixel.k.sum() * 2 + (g.pair.k * torch.arange(1., 8.)[:, None]).sum()).backward()
    torch.save(dict(gathered={n: getattr(g.superpixel, n).detach() if torch.is_tensor(
        getattr(g.superpixel, n)) else getattr(g.superpixel, n) for n in
        ('k', 'q', 'e', 'ids', 'num_pairs', 'sample_offsets', 'num_ids')},
        pairs={n: getattr(g.pair, n).detach() if torch.is_tensor(getattr(g.pair, n)) else
               getattr(g.pair, n) for n in ('k', 'point', 'image', 'superpixel',
                                            'sample_offsets', 'num_points', 'num_images',
                                            'num_ids')},
        grad_k=local.superpixel.k.grad, grad_pair_k=local.pair.k.grad, flag=g.gathered,
        gather_reads=gather_reads, gather_calls=gather_calls, backward_calls=traffic.calls),
        os.path.join(out_dir, f'{rank}.pth'))
    close_process_group()


def test_gather_every_field_of_both_levels(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path), ), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f'{r}.pth') for r in (0, 1))
    l0, l1 = _local(0), _local(1)
    for r in (r0, r1):  # every rank holds the same global features
        sp, pairs = r['gathered'], r['pairs']
        assert r['flag']
        torch.testing.assert_close(sp['k'], torch.cat([l0.superpixel.k, l1.superpixel.k]).detach())
        torch.testing.assert_close(sp['e'], torch.cat([l0.superpixel.e, l1.superpixel.e]))
        assert sp['ids'].tolist() == [0, 2, 3, 5, 6, 7, 8, 10, 11]  # rank 1's ids after 7
        assert sp['sample_offsets'].tolist() == [0, 3, 5, 9] and sp['num_ids'] == 12
        assert pairs['point'].tolist() == [0, 3, 7, 9, 11, 12, 15]  # after rank 0's 10 points
        assert pairs['image'].tolist() == [0, 1, 2, 2, 3, 4, 4]
        assert pairs['superpixel'].tolist() == [0, -1, 5, 6, 7, 10, -1]  # ignored pairs stay -1
        assert pairs['sample_offsets'].tolist() == [0, 2, 4, 7]
        assert (pairs['num_points'], pairs['num_images'], pairs['num_ids']) == (16, 5, 12)
    for r in (r0, r1):
        # one exchange of both levels' sizes (3 + 5 numbers, one host read), then one
        # all-gather per kind of field and level: k (with gradients), the other float32
        # fields (q, and e), the int64 ids and counts or indices, the sample offsets;
        # nothing exchanges sizes again (before: 15 host reads, 15 exchanges)
        assert r['gather_reads'] == 1
        assert [c[0] for c in r['gather_calls']] == ['all_gather_single'] * 9
        assert r['gather_calls'][0][1:] == (torch.int64, (8, ))
        # the backward: one reduce-scatter (on gloo an all-to-all, each rank's own rows back
        # to it) per gather with gradients, of the padded gradients of k (2 x 5 rows and
        # 2 x 4 rows, 3 columns), and no all-reduce of the gathered gradient
        assert sorted(r['backward_calls']) == [('all_to_all_single', torch.float32, (8, 3)),
                                               ('all_to_all_single', torch.float32, (10, 3))]
    # gradients: summed over the ranks, each rank's own rows
    assert torch.equal(r0['grad_k'], torch.full((5, 3), 4.0))
    assert torch.equal(r1['grad_k'], torch.full((4, 3), 4.0))
    assert torch.equal(r0['grad_pair_k'][:, 0], 2 * torch.arange(1., 5.))
    assert torch.equal(r1['grad_pair_k'][:, 0], 2 * torch.arange(5., 8.))


#: the contrastive losses with a local-anchor form, on their levels
LOCAL_FORM_LOSSES = {
    'infonce': dict(type='SuperpixelInfoNCELoss', chunk_size=3),
    'st_cb': dict(type='SemanticallyTolerantLoss', chunk_size=3,
                  balancing=dict(type='ClassAgnosticBalancing', threshold=0.5)),
    'ppkt': dict(type='PPKTLoss', num_pairs=9, chunk_size=4),
}


def _unequal_features(rank: int):
    """Rank 0: 7 superpixels and 10 pairs; rank 1: 5 and 8; row 1 of each without a teacher
    feature (the tolerant loss drops it)."""
    from torch.nn.functional import normalize
    g = torch.Generator().manual_seed(10 + rank)
    m, p = (7, 10) if rank == 0 else (5, 8)
    e = torch.rand(m, 6, generator=g)
    e[1] = 0
    sp = PooledFeatures(
        k=normalize(torch.randn(m, 8, generator=g), dim=1).requires_grad_(),
        q=normalize(torch.randn(m, 8, generator=g), dim=1).requires_grad_(), e=e,
        ids=torch.arange(m), num_pairs=torch.ones(m, dtype=torch.long),
        sample_offsets=torch.tensor([0, m]), num_ids=m)
    pairs = PairFeatures(
        k=normalize(torch.randn(p, 8, generator=g), dim=1).requires_grad_(),
        q=normalize(torch.randn(p, 8, generator=g), dim=1).requires_grad_(),
        point=torch.arange(p), image=torch.zeros(p, dtype=torch.long),
        pixel=torch.zeros(p, 2, dtype=torch.long), superpixel=torch.full((p, ), -1),
        sample_offsets=torch.tensor([0, p]), num_points=p, num_images=1, num_ids=0)
    return DistillationFeatures(superpixel=sp, pair=pairs)


def _anchors_worker(rank: int, out_dir: str) -> None:
    from mmdet3d.registry import MODELS
    from mmengine.logging import MessageHub
    import projects.img2lidar  # noqa: F401  registers the losses
    dist.init_process_group('gloo', init_method=f'file://{out_dir}/init', rank=rank,
                            world_size=2)
    MessageHub.get_current_instance().update_info('iter', 3)
    traffic = _Traffic()
    local = _unequal_features(rank)
    feats = local.gather()
    # the pair level kept local (as the distiller does for PPKT): PPKT draws from the counts
    drawn = local.gather(local_levels=('pair', ))
    out = {}
    for name, cfg in LOCAL_FORM_LOSSES.items():
        level = local.pair if name == 'ppkt' else local.superpixel
        for anchors in ('global', 'local'):
            for form, gathered in (('', feats), ('drawn-', drawn)):
                if form and name != 'ppkt':
                    continue
                head = MODELS.build(dict(cfg, anchors=anchors))
                with traffic.record():
                    loss = head.loss(gathered)['loss']
                grads = torch.autograd.grad(loss, (level.k, level.q), retain_graph=True)
                out[name, form + anchors] = (loss.detach(), [g.clone() for g in grads])
                if form:
                    out['drawn_calls', anchors] = traffic.calls
    torch.save(out, os.path.join(out_dir, f'{rank}.pth'))
    close_process_group()


def test_the_local_anchor_form_has_the_global_forms_value_and_gradient(tmp_path):
    """Each process computing only its own anchors (against every gathered candidate) gives
    the global loss's value and, per process, the same gradient as every process computing the
    whole global loss: what DDP averages is the same."""
    from mmdet3d.registry import MODELS
    from mmengine.logging import MessageHub
    mp.spawn(_anchors_worker, args=(str(tmp_path), ), nprocs=2, join=True)
    outs = [torch.load(tmp_path / f'{r}.pth') for r in (0, 1)]
    both = [_unequal_features(r) for r in (0, 1)]
    hub = MessageHub.get_current_instance()
    before = hub.get_info('iter')
    hub.update_info('iter', 3)
    try:
        for name, cfg in LOCAL_FORM_LOSSES.items():
            # the global loss computed by one process holding both batches
            lv = [f.pair if name == 'ppkt' else f.superpixel for f in both]
            head = MODELS.build(dict(cfg, anchors='global'))
            one = head(torch.cat([lv[0].k, lv[1].k]), torch.cat([lv[0].q, lv[1].q]),
                       None if name == 'ppkt' else torch.cat([lv[0].e, lv[1].e]))
            forms = ('local', 'drawn-global', 'drawn-local') if name == 'ppkt' else ('local', )
            for rank, out in enumerate(outs):
                v_g, g_g = out[name, 'global']
                torch.testing.assert_close(v_g, one.detach(), rtol=1e-5, atol=0)
                for form in forms:
                    v_l, g_l = out[name, form]
                    torch.testing.assert_close(v_l, v_g, rtol=1e-5, atol=0)
                    for a, b in zip(g_l, g_g):
                        assert b.abs().sum() > 0
                        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    finally:
        hub.update_info('iter', before)
    # PPKT on the pair level kept local moves only the drawn rows' k and q (9 of the 18 pairs,
    # at most 9 on one rank, padded): one all-gather of (rows, 8 + 8) float32 and the share's
    # scalar all-reduce in the local form; no index field, no count exchange
    for out in outs:
        for anchors in ('global', 'local'):
            calls = out['drawn_calls', anchors]
            gathers = [c for c in calls if c[0] == 'all_gather_single']
            assert len(gathers) == 1 and gathers[0][1] == torch.float32
            assert gathers[0][2][0] <= 9 and gathers[0][2][1] == 16
            assert len(calls) == 1 + (anchors == 'local')


def test_the_distiller_keeps_a_level_local_only_when_every_loss_draws_its_rows(
        nuscenes_root, tmp_path):
    """PPKT alone: the pair level stays local in a gathered step (PPKT gathers the pairs it
    draws); with a loss that reads every pair beside it, the level is gathered whole (and PPKT
    draws from the gathered rows)."""
    from mmdet3d.registry import MODELS

    from conftest import small_pretrain_cfg
    cfg = small_pretrain_cfg('configs/ppkt/ppkt_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py',
                             nuscenes_root, tmp_path, 1)
    assert MODELS.build(cfg.model).drawn_levels == ('pair', )
    cfg.model.losses.loss_similarity = dict(type='SimilarityLoss', level='pair')
    assert MODELS.build(cfg.model).drawn_levels == ()
