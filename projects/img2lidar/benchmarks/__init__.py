"""The benchmarks behind ``tools/benchmark.py``: one module per subcommand, one timing module.

Every figure is the minimum and the median over repeats, and every report starts with the
command that made it (:mod:`.timing`); :mod:`.cli` is the command line. The modules import
what they measure lazily, so importing this package costs nothing.
"""
