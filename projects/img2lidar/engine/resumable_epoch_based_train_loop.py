"""An epoch-based training loop that resumes exactly from a checkpoint saved mid-epoch."""
import itertools
from typing import Iterator, Sized

from mmdet3d.registry import LOOPS
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop


class _SkipFirst:
    """A sampler view that leaves out the first ``n`` indices of one pass of ``sampler``.

    The wrapped sampler is iterated as usual (same epoch, same seed, hence the same order), so
    the indices that remain are exactly those the interrupted run had not consumed yet.
    """

    def __init__(self, sampler: Sized, n: int) -> None:
        self.sampler = sampler
        self.n = n

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(iter(self.sampler), self.n, None)

    def __len__(self) -> int:
        return max(len(self.sampler) - self.n, 0)


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """mmengine's ``EpochBasedTrainLoop`` that resumes in the middle of an epoch.

    mmengine restores ``iter`` and ``epoch`` from a checkpoint, but its epoch loop always
    starts the resumed epoch from its first batch: a run killed after a mid-epoch checkpoint
    (``CheckpointHook(by_epoch=False)``) would repeat the batches it had already trained on,
    train more iterations than planned and shift the learning-rate schedule. This loop skips,
    in the resumed epoch only, the ``iter - epoch * len(dataloader)`` batches that the
    checkpoint has already seen, at the sampler (no sample is loaded for them), and numbers the
    remaining batches from there. The sampler draws the epoch's order from its seed and epoch
    (mmengine's ``DefaultSampler``), so the batches that follow are the ones the uninterrupted
    run would have seen, and an interrupted-and-resumed run ends with the same iteration count,
    learning-rate schedule and checkpoints as an uninterrupted one.

    Args:
        start_epoch (int): Epochs counted as done before the run starts (their iterations
            too), so that the run trains only the epochs after them. 0 (the default) trains
            them all. The tiny smoke runs of the documented commands (``IMG2LIDAR_TINY=1``,
            :mod:`.tiny_sizes`) set it to ``max_epochs - 1``: one epoch runs, and the
            validation and the checkpoint names are those of the schedule's last epoch.
        *args, **kwargs: Those of ``EpochBasedTrainLoop``.
    """

    def __init__(self, *args, start_epoch: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not 0 <= start_epoch < self._max_epochs:
            raise ValueError(f'start_epoch {start_epoch} is outside [0, {self._max_epochs})')
        self._epoch = start_epoch
        self._iter = start_epoch * len(self.dataloader)

    def run_epoch(self) -> None:
        """Iterate over one epoch, starting after the batches a resumed checkpoint has seen."""
        skip = self._iter - self._epoch * len(self.dataloader)
        if skip <= 0:
            return super().run_epoch()
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        print_log(f'resuming epoch {self._epoch + 1} after its first {skip} of '
                  f'{len(self.dataloader)} iterations (from the checkpoint)', logger='current')
        undo, batches = self._skip_batches(skip)
        try:
            for idx, data_batch in enumerate(batches, start=skip):
                self.run_iter(idx, data_batch)
        finally:
            undo()
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    def _skip_batches(self, skip: int):
        """Leave out the first ``skip`` batches of this epoch.

        Returns:
            tuple: a function that undoes the change, and the iterable of the remaining
            batches.
        """
        loader = self.dataloader
        batch_sampler = getattr(loader, 'batch_sampler', None)
        inner = getattr(batch_sampler, 'sampler', None)
        batch_size = getattr(batch_sampler, 'batch_size', None)
        if inner is None or batch_size is None:
            # an unknown batch sampler: draw the batches and drop them (correct, slower)
            it = iter(loader)
            for _ in range(skip):
                next(it)
            return (lambda: None), it
        batch_sampler.sampler = _SkipFirst(inner, skip * batch_size)

        def undo() -> None:
            batch_sampler.sampler = inner

        return undo, loader
