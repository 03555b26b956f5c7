#!/usr/bin/env python
"""The project's benchmarks, one subcommand each; every report starts with its command.

    python tools/benchmark.py --help                  # the subcommands
    python tools/benchmark.py pipeline --decode-scales 1 2
    python tools/benchmark.py loader --workers 1 2
    python tools/benchmark.py step memory --recipe resnet50

The code lives in ``projects.img2lidar.benchmarks`` (one module per subcommand, one timing
module). ``step`` and ``gather`` run ``tools/benchmark_step.py`` (its modes memory, host,
coverage, pooling; and gather) until it moves there too. ``pipeline``, ``loader``,
``superpixels`` and ``reading`` measure one thread per process: they set ``OMP_NUM_THREADS=1``
unless it is set.
"""
import os
import os.path as osp
import sys

TOOLS = osp.dirname(osp.abspath(__file__))
REPO_ROOT = osp.dirname(TOOLS)
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

#: subcommands that tools/benchmark_step.py runs: subcommand -> the mode it starts with
STEP_MODES = {'step': [], 'gather': ['gather']}
#: subcommands measured on one thread per process (set before numpy and torch load)
ONE_THREAD = ('pipeline', 'loader', 'superpixels', 'reading')


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ONE_THREAD:
        os.environ.setdefault('OMP_NUM_THREADS', '1')
    if args and args[0] in STEP_MODES:
        if TOOLS not in sys.path:
            sys.path.insert(0, TOOLS)
        import benchmark_step
        return benchmark_step.main(STEP_MODES[args[0]] + args[1:]) or 0
    from projects.img2lidar.benchmarks.cli import main as benchmarks_main
    return benchmarks_main(argv)


if __name__ == '__main__':
    sys.exit(main())
