"""Checks of a dataset's info file at its initialisation: a missing info file and an empty split
are errors that name the file and the command that makes it (mmengine would raise a bare
``FileNotFoundError`` for the first and numpy's ``need at least one array to concatenate`` for
the second, when it packs the empty sample list)."""
import os.path as osp
from typing import List, Optional

from mmengine.fileio import LocalBackend, get_file_backend

from .info_file_io import checked_info_file
from .preparation_commands import info_command


class CheckedInfoFile:
    """Mixin of an mmengine dataset whose ``load_data_list`` checks its info file: missing
    (:func:`require_info_file`), damaged (:func:`~.info_file_io.checked_info_file`) or listing
    no sample (:func:`require_samples`) is an error naming the file (and the command that makes
    it). Put it before the mmengine base class: ``class D(CheckedInfoFile, BaseDataset)``.
    """

    def load_data_list(self) -> List[dict]:
        """The info file's samples, checked (see the class doc)."""
        require_info_file(self)
        with checked_info_file(self.ann_file):  # damage: an error naming the file
            data_list = super().load_data_list()
        require_samples(self, data_list)
        return data_list


def require_info_file(dataset) -> None:
    """Raise when the dataset's info file, on a local file system, does not exist.

    Raises:
        FileNotFoundError: Naming the info file and the command that writes it.
    """
    ann_file = dataset.ann_file
    backend = get_file_backend(ann_file, backend_args=getattr(dataset, 'backend_args', None))
    if isinstance(backend, LocalBackend) and not osp.isfile(ann_file):
        raise FileNotFoundError(
            f'info file not found: {ann_file} ({type(dataset).__name__}, data_root '
            f'{dataset.data_root!r}). Make it with:\n    '
            f'{info_command(type(dataset).__name__, ann_file, dataset.data_root)}')


def require_samples(dataset, data_list: List[dict], listed: Optional[int] = None,
                    selection: str = '') -> None:
    """Raise when the dataset has no sample to load.

    Args:
        dataset: The dataset (its ``ann_file`` is named).
        data_list (list[dict]): The samples it would load.
        listed (int, optional): How many samples the info file lists, when ``data_list`` is a
            selection of them (then ``selection`` says which).
        selection (str): The selection, e.g. ``'few_shot=1'``.

    Raises:
        ValueError: An empty split, naming the info file.
    """
    if data_list:
        return
    name = type(dataset).__name__
    if listed:
        raise ValueError(f'{dataset.ann_file}: {selection} keeps none of the {listed} samples of '
                         f'this info file ({name} has nothing to load)')
    raise ValueError(
        f'{dataset.ann_file}: the info file lists no samples (an empty split: {name} has '
        'nothing to load). Check the scenes or sequences of this split (the info tool prints '
        'how many it found) and write it again with:\n    '
        f'{info_command(name, dataset.ann_file, dataset.data_root)}')
