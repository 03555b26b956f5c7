"""Check, before the first iteration, that every file the run's datasets read exists."""
import time
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from mmdet3d.registry import HOOKS
from mmengine.hooks import Hook

from ..datasets.image_lidar_pretrain_dataset import ImageLidarPretrainDataset
from ..datasets.preparation_commands import (SKIP_HINT, commands_make, raw_data_hint,
                                             superpixel_arguments, superpixel_command)
from ..datasets.required_files import leaf_datasets, missing_files, required_files


class MissingDataFilesError(FileNotFoundError):
    """Files a run's datasets read are missing (the message says which and how to make them)."""


class _Findings:
    """What a scan found: each distinct file's existence, (split, kind) -> [listed, missing],
    (split, kind) -> missing paths, and the remedies."""

    def __init__(self) -> None:
        self.exists: Dict[str, bool] = {}
        self.counts: Dict[Tuple[str, str], List[int]] = OrderedDict()
        self.examples: Dict[Tuple[str, str], List[str]] = OrderedDict()
        self.remedies: list = []


@HOOKS.register_module()
class DataFilesCheckHook(Hook):
    """Stop a run at its start when a file its datasets read is missing, instead of at the
    sample that reads it (for a validation split: at the first validation, hours in).

    Before the first training iteration (``before_train``: the train and the val loops, and so
    their datasets, are built by then) it checks the train and val datasets; in a test run
    (``before_test``) the test dataset, and in a validation run (``before_val`` outside
    training) the val dataset. For every sample it lists the files the pipeline's loading
    transforms read (points, sweeps, images, superpixel maps, label files;
    :mod:`projects.img2lidar.datasets.required_files`, through dataset wrappers) at the paths
    the dataset computed, and stats each once (``os.path.isfile``; nothing is read or
    decoded). If any is missing it raises :class:`MissingDataFilesError` with the count missing
    per split and kind, the first ``max_paths`` paths of each, and the command that makes them
    (``tools/create_superpixels.py`` with the split's info file, data root, image prefix and
    out dir for superpixel maps; where the dataset was expected for points, images and
    labels). When everything is there it logs one line with the counts. A missing info file or
    an empty split stops the run earlier, when the dataset is built (see
    :mod:`projects.img2lidar.datasets.info_file_checks`).

    In a distributed run every process checks on its own, with no collective: each rank reads
    through its own file system view (node-local copies of a dataset are checked where they are
    read), every rank reaches the same verdict on the same files and raises the same error, and
    no rank can be left waiting for a rank that failed. The cost is one stat per file per
    process, served from the same metadata cache on one node.

    ``configs/_base_/default_runtime.py`` registers it as ``default_hooks.data_files``; skip it
    (files in object storage, which a stat cannot see) with
    ``--cfg-options default_hooks.data_files.skip=True``.

    Args:
        skip (bool): Check nothing (logs that the check was skipped). Defaults to False.
        max_paths (int): Missing paths shown per split and kind. Defaults to 3.
        threads (int): Threads that run the stats. Defaults to 16.
    """

    priority = 'VERY_HIGH'

    def __init__(self, skip: bool = False, max_paths: int = 3, threads: int = 16) -> None:
        self.skip = skip
        self.max_paths = max_paths
        self.threads = threads
        self._checked: set = set()

    def before_train(self, runner) -> None:
        splits = OrderedDict(train=runner.train_loop.dataloader.dataset)
        if runner.val_loop is not None:
            splits['val'] = runner.val_loop.dataloader.dataset
        self.check(runner, splits)

    def before_val(self, runner) -> None:
        self.check(runner, OrderedDict(val=runner.val_loop.dataloader.dataset))

    def before_test(self, runner) -> None:
        self.check(runner, OrderedDict(test=runner.test_loop.dataloader.dataset))

    def check(self, runner, splits: Dict[str, object]) -> None:
        """Check the datasets of ``splits`` (name -> dataset) not checked before.

        Raises:
            MissingDataFilesError: Some files are missing.
        """
        splits = OrderedDict((name, ds) for name, ds in splits.items()
                             if id(ds) not in self._checked)
        if not splits:
            return
        self._checked.update(id(ds) for ds in splits.values())
        if self.skip:
            runner.logger.info(f'data files of {", ".join(splits)} not checked '
                               '(default_hooks.data_files.skip=True)')
            return
        start = time.perf_counter()
        found = self._scan(splits)
        seconds = time.perf_counter() - start
        if not all(found.exists.values()):
            raise MissingDataFilesError(self._message(found))
        summary = '; '.join(
            f'{split}: ' + ', '.join(f'{c[0]} {kind}' for (s, kind), c in found.counts.items()
                                     if s == split) for split in splits)
        runner.logger.info(f'data files checked in {seconds:.1f} s, all present ({summary})')

    def _scan(self, splits: Dict[str, object]) -> _Findings:
        """Stat every file of every split once; count, collect and explain what is missing."""
        found = _Findings()
        for split, dataset in splits.items():
            for leaf in leaf_datasets(dataset):
                for kind, paths in required_files(leaf).items():
                    todo = [p for p in paths if p not in found.exists]
                    gone = set(missing_files(todo, self.threads))
                    found.exists.update((p, p not in gone) for p in todo)
                    missing = [p for p in paths if not found.exists[p]]
                    counts = found.counts.setdefault((split, kind), [0, 0])
                    counts[0] += len(paths)
                    counts[1] += len(missing)
                    if missing:
                        found.examples.setdefault((split, kind), []).extend(missing)
                        found.remedies.append(self._remedy(split, kind, leaf, missing))
        return found

    def _remedy(self, split: str, kind: str, dataset, missing: List[str]):
        """How to make the missing files of one kind of one dataset: a line, or, for maps
        one superpixel command writes, (split, its arguments, the info file)."""
        if kind == 'superpixels' and isinstance(dataset, ImageLidarPretrainDataset):
            args = self._superpixel_arguments(dataset, missing)
            if args is not None:
                return split, args, dataset.ann_file
            return (f'{split} {kind}: no single tools/create_superpixels.py command writes '
                    f'them; write one map per image as {dataset.data_prefix.get("sp", "")}/'
                    f'<CAM>/<image stem>{dataset.superpixel_suffix}')
        return f'{split} {kind}: {raw_data_hint(kind, missing)}'

    @staticmethod
    def _superpixel_arguments(dataset: ImageLidarPretrainDataset,
                              missing: List[str]) -> Optional[Dict[str, str]]:
        """The superpixel command's arguments for the dataset, when the command writes every
        missing map (checked against the tool's own job list)."""
        wanted = set(missing)
        cameras: List[str] = []
        for idx in range(len(dataset)):
            info = dataset.get_data_info(idx)
            if wanted.intersection(info['sp_paths']):
                cameras += [c for c in info['cam_names'] if c not in cameras]
        args = superpixel_arguments(dataset, cameras)
        if args is None or not commands_make(args, [dataset.ann_file], missing):
            return None
        return args

    @staticmethod
    def _fixes(remedies: list) -> List[str]:
        """The remedy lines, with one superpixel command for all the info files that share
        its arguments."""
        lines: List[str] = []
        commands: Dict[tuple, Tuple[List[str], List[str], Dict[str, str]]] = OrderedDict()
        for r in remedies:
            if isinstance(r, str):
                lines += [r] if r not in lines else []
                continue
            split, args, ann_file = r
            splits, infos, _ = commands.setdefault(tuple(sorted(args.items())), ([], [], args))
            splits += [split] if split not in splits else []
            infos += [ann_file] if ann_file not in infos else []
        return [f'{", ".join(splits)} superpixels: {superpixel_command(infos, args)}\n'
                '      (with the SLIC options, e.g. --downscale, of the maps you already have, '
                'if any)' for splits, infos, args in commands.values()] + lines

    def _message(self, found: _Findings) -> str:
        """The error: totals over distinct files, counts and first paths by split and kind,
        the remedies."""
        missing = sum(not ok for ok in found.exists.values())
        rows = [f'  {split:<6} {kind:<14} {c[1]} of {c[0]}'
                for (split, kind), c in found.counts.items() if c[1]]
        shown = []
        for (split, kind), paths in found.examples.items():
            shown.append(f'  {split} {kind}:')
            shown += [f'    {p}' for p in paths[:self.max_paths]]
            if len(paths) > self.max_paths:
                shown.append(f'    ... and {len(paths) - self.max_paths} more')
        return '\n'.join([
            f'{missing} of the {len(found.exists)} files this run reads are missing; stopped '
            'before the first iteration (DataFilesCheckHook). Missing, by split and kind:',
            *rows, 'First missing files:', *shown, 'To make them:',
            *[f'  {f}' for f in self._fixes(found.remedies)], SKIP_HINT
        ])
