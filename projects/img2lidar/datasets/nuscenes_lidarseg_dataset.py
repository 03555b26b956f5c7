"""nuScenes lidarseg for mmdet3d segmentors, with SLidR's few-shot training subsets."""
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmdet3d.datasets import Seg3DDataset
from mmdet3d.registry import DATASETS

from .info_file_checks import require_info_file, require_samples
from .info_file_io import checked_info_file

#: nuScenes raw lidarseg ids (0-31) -> evaluation ids (0 = ignored, 1-16 = CLASSES)
RAW_TO_EVAL = {0: 0, 1: 0, 2: 7, 3: 7, 4: 7, 5: 0, 6: 7, 7: 0, 8: 0, 9: 1, 10: 0, 11: 0, 12: 8,
               13: 0, 14: 2, 15: 3, 16: 3, 17: 4, 18: 5, 19: 0, 20: 0, 21: 6, 22: 9, 23: 10,
               24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 29: 0, 30: 16, 31: 0}
CLASSES = ('barrier', 'bicycle', 'bus', 'car', 'construction_vehicle', 'motorcycle',
           'pedestrian', 'traffic_cone', 'trailer', 'truck', 'driveable_surface', 'other_flat',
           'sidewalk', 'terrain', 'manmade', 'vegetation')
#: SLidR's few-shot subsets: percentage of train scenes -> keep every k-th
FEW_SHOT_STEPS = {1: 100, 5: 20, 10: 10, 25: 4, 100: 1}


def few_shot_scenes(scenes_in_table_order: Sequence[str], train_scenes: Sequence[str],
                    step: int) -> List[str]:
    """SLidR's few-shot selection.

    Walk the scenes in the order of nuScenes' scene table, count only those of the official
    train split, and keep a scene when its running count (from 1) is a multiple of ``step``.

    Args:
        scenes_in_table_order (Sequence[str]): Scene names as ``nusc.scene`` lists them.
        train_scenes (Sequence[str]): The official train split.
        step (int): 100 for 1%, 20 for 5%, 10 for 10%, 4 for 25%, 1 for 100%.

    Returns:
        list[str]: The kept scenes, in table order.
    """
    train = set(train_scenes)
    kept, count = [], 0
    for name in scenes_in_table_order:
        if name in train:
            count += 1
            if count % step == 0:
                kept.append(name)
    return kept


@DATASETS.register_module()
class NuScenesLidarSegDataset(Seg3DDataset):
    """nuScenes lidarseg: 16 classes, raw ids mapped as SLidR and the devkit do, 'noise' and
    every unmapped raw class ignored (label 16).

    Reads the info files of ``tools/create_pretrain_infos.py`` (``lidar_points.lidar_path``,
    ``pts_semantic_mask_path`` relative to the data root, ``scene_name`` and ``scene_index``).
    Use mmdet3d's ``LoadAnnotations3D(with_seg_3d=True, seg_3d_dtype='np.uint8')`` and
    ``PointSegClassMapping`` in the pipeline.

    Args:
        few_shot (int, optional): Percentage of the train scenes to keep with SLidR's rule
            (1, 5, 10, 25 or 100; see :func:`few_shot_scenes`). Only for train infos. None keeps
            every sample.
        **kwargs: See :class:`mmdet3d.datasets.Seg3DDataset`.
    """

    METAINFO = {
        'classes': CLASSES,
        'palette': [[255, 120, 50], [255, 192, 203], [255, 255, 0], [0, 150, 245],
                    [0, 255, 255], [200, 180, 0], [255, 0, 0], [255, 240, 150],
                    [135, 60, 0], [160, 32, 240], [255, 0, 255], [139, 137, 137],
                    [75, 0, 75], [150, 240, 80], [230, 230, 250], [0, 175, 0]],
        'seg_valid_class_ids': tuple(range(16)),
        'seg_all_class_ids': tuple(range(16)),
    }

    def __init__(self,
                 data_root: Optional[str] = None,
                 ann_file: str = '',
                 metainfo: Optional[dict] = None,
                 data_prefix: dict = dict(pts='samples/LIDAR_TOP', pts_semantic_mask=''),
                 pipeline: List = [],
                 modality: dict = dict(use_lidar=True, use_camera=False),
                 ignore_index: Optional[int] = None,
                 few_shot: Optional[int] = None,
                 **kwargs) -> None:
        if few_shot is not None and few_shot not in FEW_SHOT_STEPS:
            raise ValueError(f'few_shot must be one of {sorted(FEW_SHOT_STEPS)} (percent), '
                             f'got {few_shot}')
        self.few_shot = few_shot
        super().__init__(data_root=data_root, ann_file=ann_file,
                         metainfo=dict(dict(classes=CLASSES), **(metainfo or {})),
                         data_prefix=data_prefix,
                         pipeline=pipeline, modality=modality, ignore_index=ignore_index,
                         **kwargs)

    def get_seg_label_mapping(self, metainfo=None) -> np.ndarray:
        """Raw id (0-31) -> training label (eval id - 1; eval id 0 -> ignore label 16)."""
        ignore = len(CLASSES)
        mapping = np.full(max(RAW_TO_EVAL) + 1, ignore, dtype=np.int64)
        for raw, ev in RAW_TO_EVAL.items():
            mapping[raw] = ev - 1 if ev > 0 else ignore
        return mapping

    def load_data_list(self) -> List[dict]:
        """The info file's samples (SLidR's few-shot scenes of them with ``few_shot``); a
        missing info file or an empty split is an error naming the file."""
        require_info_file(self)
        with checked_info_file(self.ann_file):  # damage: an error naming the file
            data_list = super().load_data_list()
        require_samples(self, data_list)
        if self.few_shot is None:
            return data_list
        missing = [i for i, d in enumerate(data_list)
                   if 'scene_name' not in d or 'scene_index' not in d]
        if missing:
            raise KeyError(f'{self.ann_file}: few_shot needs scene_name and scene_index in every '
                           f'entry ({len(missing)} lack them); regenerate the infos with '
                           'tools/create_pretrain_infos.py')
        order: Dict[str, int] = {d['scene_name']: d['scene_index'] for d in data_list}
        in_table_order = sorted(order, key=order.get)
        keep = set(few_shot_scenes(in_table_order, in_table_order,
                                   FEW_SHOT_STEPS[self.few_shot]))
        kept = [d for d in data_list if d['scene_name'] in keep]
        require_samples(self, kept, len(data_list), f'few_shot={self.few_shot}')
        return kept
