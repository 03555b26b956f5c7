"""The dataset splits that ship with the project, as package data.

Each split list is a text file in this folder, one name per line, found from any working
directory and after ``pip install`` (``setup.py`` lists the files as package data). What each
split is, and where it comes from, is in ``README.md`` beside them.
"""
from pathlib import Path
from typing import List, Union

#: the folder holding the split lists
SPLITS_DIR = Path(__file__).resolve().parent
#: the 100 nuScenes v1.0-trainval train scenes held out for pretraining validation
#: (SLidR's and ST-SLidR's; pretraining uses the other 600)
NUSCENES_PRETRAIN_VAL_SCENES = SPLITS_DIR / 'nuscenes_pretrain_val_scenes.txt'


def read_name_list(path: Union[str, Path]) -> List[str]:
    """The names of a split list, one per non-empty line, in file order.

    Raises:
        FileNotFoundError: The file does not exist (named in the message).
        ValueError: The file lists a name twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'split list not found: {path}')
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f'{path}: names listed more than once: {dupes}')
    return names
