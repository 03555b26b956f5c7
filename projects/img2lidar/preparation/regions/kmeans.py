"""k-means (Lloyd's iterations after k-means++ seeding) on any torch device, deterministic for
a seed."""
from typing import Tuple

import torch
from torch import Tensor


def squared_distances(x: Tensor, centroids: Tensor) -> Tensor:
    """Squared Euclidean distances, (N, K), of points (N, D) to centroids (K, D)."""
    d = (x * x).sum(1, keepdim=True) - 2 * x @ centroids.T + (centroids * centroids).sum(1)
    return d.clamp_(min=0)


def assign_nearest(x: Tensor, centroids: Tensor, chunk: int = 1 << 15) -> Tensor:
    """The nearest centroid of every point (the first of equally near ones), (N,) int64.

    Args:
        x (Tensor): Points, (N, D).
        centroids (Tensor): (K, D), on x's device and dtype.
        chunk (int): Points per distance block (bounds memory to chunk x K).
    """
    return torch.cat([squared_distances(x[i:i + chunk], centroids).argmin(1)
                      for i in range(0, len(x), chunk)]) if len(x) else \
        torch.zeros(0, dtype=torch.long, device=x.device)


def kmeans_plus_plus(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding: the first centre uniformly, each next one with probability
    proportional to its squared distance to the nearest centre chosen so far; (k, D).

    The draws use ``generator`` (a CPU generator) on CPU copies of the weights, so that a
    seed gives the same centres on every device.
    """
    n = len(x)
    first = int(torch.randint(n, (1, ), generator=generator))
    chosen = [first]
    nearest = squared_distances(x, x[first:first + 1])[:, 0]
    for _ in range(1, k):
        weights = nearest.double().cpu()
        if float(weights.sum()) <= 0:  # every point sits on a centre: any other point
            weights = torch.ones(n, dtype=torch.float64)
            weights[chosen] = 0
        nxt = int(torch.multinomial(weights, 1, generator=generator))
        chosen.append(nxt)
        nearest = torch.minimum(nearest, squared_distances(x, x[nxt:nxt + 1])[:, 0])
    return x[chosen].clone()


def kmeans(x: Tensor, k: int, iterations: int = 20, seed: int = 0) -> Tuple[Tensor, Tensor]:
    """Cluster points into ``k`` groups.

    k-means++ seeding, then up to ``iterations`` Lloyd steps (assign every point to its
    nearest centroid, move every centroid to its points' mean), stopping when no assignment
    changes. A centroid left with no point moves to the point farthest from its own centroid.

    Args:
        x (Tensor): Points, (N, D) float, on any device.
        k (int): Clusters; at most N.
        iterations (int): Most Lloyd steps. Defaults to 20.
        seed (int): Seed of the seeding draws. Defaults to 0.

    Returns:
        tuple[Tensor, Tensor]: Centroids (k, D) and each point's cluster (N,) int64.
    """
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f'kmeans: k must be in [1, {n}] (the number of points), got {k}')
    generator = torch.Generator().manual_seed(seed)
    centroids = kmeans_plus_plus(x, k, generator)
    labels = assign_nearest(x, centroids)
    for _ in range(iterations):
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        empty = counts == 0
        centroids = sums / counts.clamp(min=1).unsqueeze(1).to(x.dtype)
        if bool(empty.any()):
            far = squared_distances(x, centroids).gather(1, labels[:, None])[:, 0]
            centroids[empty] = x[far.topk(int(empty.sum())).indices]
        new = assign_nearest(x, centroids)
        if torch.equal(new, labels):
            break
        labels = new
    return centroids, labels
