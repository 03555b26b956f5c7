"""Gathering a step's features across processes: every field of every level, indices and ids
shifted so that they stay unique in the global batch, gradients summed back to their owners
(two gloo processes, each its own rows, against the concatenation by hand)."""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

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


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    local = _local(rank)
    g = local.gather()
    # a loss on the global rows: each rank's gradient is world_size x its rows' share
    (g.superpixel.k.sum() * 2 + (g.pair.k * torch.arange(1., 8.)[:, None]).sum()).backward()
    torch.save(dict(gathered={n: getattr(g.superpixel, n).detach() if torch.is_tensor(
        getattr(g.superpixel, n)) else getattr(g.superpixel, n) for n in
        ('k', 'q', 'e', 'ids', 'num_pairs', 'sample_offsets', 'num_ids')},
        pairs={n: getattr(g.pair, n).detach() if torch.is_tensor(getattr(g.pair, n)) else
               getattr(g.pair, n) for n in ('k', 'point', 'image', 'superpixel',
                                            'sample_offsets', 'num_points', 'num_images',
                                            'num_ids')},
        grad_k=local.superpixel.k.grad, grad_pair_k=local.pair.k.grad, flag=g.gathered),
        os.path.join(out_dir, f'{rank}.pth'))
    dist.destroy_process_group()


def test_gather_every_field_of_both_levels(tmp_path):
    mp.spawn(_worker, args=(29677, str(tmp_path)), nprocs=2, join=True)
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
    # gradients: summed over the ranks, each rank's own rows
    assert torch.equal(r0['grad_k'], torch.full((5, 3), 4.0))
    assert torch.equal(r1['grad_k'], torch.full((4, 3), 4.0))
    assert torch.equal(r0['grad_pair_k'][:, 0], 2 * torch.arange(1., 5.))
    assert torch.equal(r1['grad_pair_k'][:, 0], 2 * torch.arange(5., 8.))
