"""mmdet3d 1.4's SemanticKITTI info files, made from the standard SemanticKITTI layout.

The command line is ``tools/create_semantickitti_infos.py``. The files are the ones mmdet3d
1.4's ``tools/create_data.py semantickitti`` writes (its
``tools/dataset_converters/semantickitti_converter.py``, which is not part of the installed
package), key for key: ``<out_dir>/<prefix>_infos_<split>.pkl`` for the splits of
:data:`SPLIT_SEQUENCES`, each holding::

    {'metainfo': {'DATASET': 'SemanticKITTI'},
     'data_list': [
         {'lidar_points': {'lidar_path': 'sequences/00/velodyne/000000.bin',
                           'num_pts_feats': 4},
          'pts_semantic_mask_path': 'sequences/00/labels/000000.label',
          'sample_id': '00'},  # str(int(sequence)) + str(int(frame)), as mmdet3d writes it
         ...]}

with paths relative to the dataset root (a config's ``data_root``), sequences in split order
and scans in frame order. mmdet3d writes the frame numbers of a table of the official scan
counts without looking at the disk; here the scans are the ``sequences/XX/velodyne/*.bin`` files
found (the same list on a complete download), so that a missing folder or label file is an error
now rather than at the first epoch that reads it. Like mmdet3d, the test split lists
``pts_semantic_mask_path`` too, although SemanticKITTI publishes no labels for sequences 11-21:
their ``labels`` folders are not required.
"""
import glob
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

#: the sequences of each split (SemanticKITTI's, as mmdet3d 1.4's converter splits them):
#: the one place the project lists them
SPLIT_SEQUENCES: Dict[str, Tuple[str, ...]] = {
    'train': ('00', '01', '02', '03', '04', '05', '06', '07', '09', '10'),
    'val': ('08', ),
    'test': ('11', '12', '13', '14', '15', '16', '17', '18', '19', '20', '21'),
}
#: the splits whose scans have label files (SemanticKITTI publishes none for the test split)
LABELLED_SPLITS = ('train', 'val')
#: the number of scans of each sequence in SemanticKITTI (mmdet3d's ``total_num``): a folder
#: with another count is reported (a partial download), not refused
OFFICIAL_SCANS: Dict[str, int] = {
    '00': 4541, '01': 1101, '02': 4661, '03': 801, '04': 271, '05': 2761, '06': 1101,
    '07': 1101, '08': 4071, '09': 1591, '10': 1201, '11': 921, '12': 1061, '13': 3281,
    '14': 631, '15': 1901, '16': 1731, '17': 491, '18': 1801, '19': 4981, '20': 831,
    '21': 2721}
#: mmdet3d's metainfo of the info files
METAINFO = dict(DATASET='SemanticKITTI')
#: the float32 values per point of a SemanticKITTI scan: x, y, z, remission
NUM_PTS_FEATS = 4
#: how many missing paths an error lists
SHOWN = 5


def velodyne_dir(sequence: str) -> str:
    """``sequences/<sequence>/velodyne``, relative to the root."""
    return osp.join('sequences', sequence, 'velodyne')


def labels_dir(sequence: str) -> str:
    """``sequences/<sequence>/labels``, relative to the root."""
    return osp.join('sequences', sequence, 'labels')


def check_folders(root: str, splits: Sequence[str]) -> None:
    """Refuse a root that lacks a folder the splits need.

    Args:
        root (str): The SemanticKITTI root (holds ``sequences``).
        splits (Sequence[str]): Names of :data:`SPLIT_SEQUENCES`.

    Raises:
        FileNotFoundError: Naming every missing folder (velodyne folders of every split, label
            folders of :data:`LABELLED_SPLITS`).
    """
    if not osp.isdir(osp.join(root, 'sequences')):
        raise FileNotFoundError(
            f'SemanticKITTI root {root}: no folder {osp.join(root, "sequences")} (the standard '
            'layout is sequences/XX/velodyne/*.bin and sequences/XX/labels/*.label)')
    missing = []
    for split in splits:
        for seq in SPLIT_SEQUENCES[split]:
            folders = [velodyne_dir(seq)] + ([labels_dir(seq)] if split in LABELLED_SPLITS
                                             else [])
            missing += [osp.join(root, f) for f in folders if not osp.isdir(osp.join(root, f))]
    if missing:
        sequences = sorted({osp.basename(osp.dirname(m)) for m in missing})
        raise FileNotFoundError(
            f'SemanticKITTI root {root}: {len(missing)} folders that the '
            f'{"/".join(splits)} splits need are missing, e.g. {", ".join(missing[:SHOWN])} '
            f'(sequences with a missing folder: {", ".join(sequences)}). The layout is '
            'sequences/XX/velodyne/*.bin for every sequence of the splits and '
            f'sequences/XX/labels/*.label for those of {" and ".join(LABELLED_SPLITS)}')


def sequence_frames(root: str, sequence: str) -> List[str]:
    """The frame numbers (6-digit file stems) of a sequence's scans, sorted.

    Raises:
        FileNotFoundError: The velodyne folder holds no ``.bin`` file.
        ValueError: A scan's file name is not a frame number.
    """
    folder = osp.join(root, velodyne_dir(sequence))
    stems = sorted(osp.splitext(osp.basename(p))[0]
                   for p in glob.glob(osp.join(glob.escape(folder), '*.bin')))
    if not stems:
        raise FileNotFoundError(f'{folder}: no scan (*.bin) in this folder')
    bad = [s for s in stems if not s.isdigit()]
    if bad:
        raise ValueError(f'{folder}: scan names must be frame numbers (000000.bin, ...), got '
                         f'{[s + ".bin" for s in bad[:SHOWN]]}')
    return stems


def split_infos(root: str, split: str) -> dict:
    """The info dict of one split, as mmdet3d 1.4's converter writes it (module doc).

    Args:
        root (str): The SemanticKITTI root.
        split (str): A name of :data:`SPLIT_SEQUENCES`.

    Returns:
        dict: ``metainfo`` and ``data_list``.

    Raises:
        FileNotFoundError: A scan of a labelled split has no label file (the count and the first
            few paths are named).
    """
    data_list, unlabelled = [], []
    for seq in SPLIT_SEQUENCES[split]:
        for frame in sequence_frames(root, seq):
            mask = osp.join(labels_dir(seq), frame + '.label')
            if split in LABELLED_SPLITS and not osp.isfile(osp.join(root, mask)):
                unlabelled.append(osp.join(root, mask))
            data_list.append(dict(
                lidar_points=dict(lidar_path=osp.join(velodyne_dir(seq), frame + '.bin'),
                                  num_pts_feats=NUM_PTS_FEATS),
                pts_semantic_mask_path=mask,
                sample_id=str(int(seq)) + str(int(frame))))
    if unlabelled:
        raise FileNotFoundError(f'SemanticKITTI root {root}: {len(unlabelled)} scans of the '
                                f'{split} split have no label file, e.g. {unlabelled[:SHOWN]}')
    return dict(metainfo=dict(METAINFO), data_list=data_list)


def unofficial_counts(infos: Dict[str, dict]) -> Dict[str, Tuple[int, int]]:
    """Sequences whose scan count in ``infos`` (split -> info dict) differs from
    SemanticKITTI's: ``{sequence: (found, official)}``."""
    found: Dict[str, int] = {}
    for info in infos.values():
        for entry in info['data_list']:
            seq = entry['lidar_points']['lidar_path'].split(osp.sep)[1]
            found[seq] = found.get(seq, 0) + 1
    return {seq: (n, OFFICIAL_SCANS[seq]) for seq, n in found.items() if n != OFFICIAL_SCANS[seq]}


def create_semantickitti_infos(root: str, out_dir: Optional[str] = None,
                               prefix: str = 'semantickitti',
                               splits: Sequence[str] = tuple(SPLIT_SEQUENCES)) -> Dict[str, str]:
    """Write ``<out_dir>/<prefix>_infos_<split>.pkl`` for each split (module doc).

    Every folder is checked before anything is written.

    Args:
        root (str): The SemanticKITTI root (``sequences/XX/velodyne/*.bin``,
            ``sequences/XX/labels/*.label``).
        out_dir (str, optional): Where the info files go; the root when None (mmdet3d's configs
            read the infos and the scans from one ``data_root``).
        prefix (str): File name prefix (mmdet3d's ``--extra-tag``). Defaults to
            'semantickitti'.
        splits (Sequence[str]): Splits to write. Defaults to train, val and test.

    Returns:
        dict: Split name -> path of the written info file.

    Raises:
        KeyError: An unknown split name.
        FileNotFoundError: A missing folder, an empty velodyne folder or a missing label file,
            named.
    """
    import mmengine
    unknown = [s for s in splits if s not in SPLIT_SEQUENCES]
    if unknown:
        raise KeyError(f'unknown SemanticKITTI splits {unknown}; known: {list(SPLIT_SEQUENCES)}')
    check_folders(root, splits)
    infos = {split: split_infos(root, split) for split in splits}
    for seq, (found, official) in sorted(unofficial_counts(infos).items()):
        print(f'note: sequence {seq} has {found} scans in {osp.join(root, velodyne_dir(seq))} '
              f'(SemanticKITTI has {official})')
    out_dir = root if out_dir is None else out_dir
    mmengine.mkdir_or_exist(out_dir)
    written = {}
    for split, info in infos.items():
        path = osp.join(out_dir, f'{prefix}_infos_{split}.pkl')
        mmengine.dump(info, path)
        print(f'SemanticKITTI info {split} file ({len(info["data_list"])} scans of sequences '
              f'{", ".join(SPLIT_SEQUENCES[split])}) is saved to {path}')
        written[split] = path
    return written
