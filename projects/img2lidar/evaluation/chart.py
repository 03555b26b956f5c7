"""A bar chart of mIoU per protocol and method, with the confidence interval over seeds as
error bars and every seed's value as a dot; failed runs (non-finite mIoU) are counted under
their bar."""
import os
import os.path as osp
import tempfile
from typing import Sequence

from .results import RunResult, group, miou_summary
from .statistics import CONFIDENCE


def bar_chart(results: Sequence[RunResult], path: str, title: str) -> None:
    """Write a PNG: one group of bars per protocol, one bar per method (its mean mIoU % over
    the runs that did not fail), error bars spanning the confidence interval where there are
    several, and 'k failed' written at the foot of a bar whose group has failed runs.

    Args:
        results (Sequence[RunResult]): The runs.
        path (str): The PNG file (written whole or not at all).
        title (str): The chart's title.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    groups = group(results)
    methods = list(dict.fromkeys(m for m, _ in groups))
    protocols = list(dict.fromkeys(p for _, p in groups))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.2 + 1.6 * len(protocols) * max(1, len(methods) / 2), 3.6))
    for i, method in enumerate(methods):
        xs, means, low, high = [], [], [], []
        for j, protocol in enumerate(protocols):
            runs = groups.get((method, protocol))
            if not runs:
                continue
            s = miou_summary(runs)
            x = j + (i - (len(methods) - 1) / 2) * width
            if s.non_finite:
                ax.text(x, 0, f'{len(s.non_finite)} failed', rotation=90, ha='center',
                        va='bottom', fontsize=7, color='red')
            if s.mean is None:
                continue
            xs.append(x)
            means.append(s.mean)
            low.append(s.mean - s.ci[0] if s.ci else 0.0)
            high.append(s.ci[1] - s.mean if s.ci else 0.0)
            ax.plot([x] * s.n, s.values, 'k.', markersize=4, zorder=3)
        ax.bar(xs, means, width * 0.9, yerr=[low, high], capsize=4, label=method)
    ax.set_xticks(range(len(protocols)), protocols)
    ax.set_ylabel('mIoU (%)')
    ax.set_title(f'{title}\n(error bars: {round(100 * CONFIDENCE)}% CI over seeds; dots: seeds)',
                 fontsize=9)
    if len(methods) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{osp.basename(path)}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            fig.savefig(f, dpi=120, format='png')
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if osp.exists(tmp):
            os.remove(tmp)
