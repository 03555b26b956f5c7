"""PandaSet lidar segmentation for mmdet3d segmentors, with ScaLR's 17 evaluation classes."""
import copy
from typing import List, Optional

import numpy as np
from mmdet3d.datasets import Seg3DDataset
from mmdet3d.registry import DATASETS

from .info_file_checks import CheckedInfoFile


@DATASETS.register_module()
class PandaSetSegDataset(CheckedInfoFile, Seg3DDataset):
    """PandaSet semseg: 42 raw classes reduced to 17 evaluation classes, 10 raw classes (and
    the unlabelled id 0) ignored (label 17).

    The reduction is ScaLR's (Puy et al., "Three Pillars improving Vision Foundation Model
    Distillation for Lidar", CVPR 2024; ``MAPPING_CLASS`` and ``CLASS_NAME`` of
    ``datasets/pandaset_for_scalr.py`` in valeoai/ScaLR), the one used to report lidar
    segmentation on PandaSet-64 and PandaSet-GT in image-to-lidar distillation work, so that
    results here compare with theirs; the classes keep its order. The table itself, raw id by
    raw id, is :attr:`METAINFO` ``seg_label_mapping``; in words:

    - merged: 'road_marking' = Lane Line + Stop Line + Other Road Marking; 'traffic_sign' =
      Signs + Construction Signs; 'barrier' = Road Barriers + Temporary Construction Barriers;
      'traffic_cone' = Pylons + Cones; 'pedestrian' = Pedestrian + Pedestrian with Object;
      'truck' = Pickup Truck + Medium-sized Truck + Semi-truck; 'other_vehicle' = Towed Object
      + Construction Vehicle + Uncommon + Pedicab + Train + Trolley + Tram / Subway;
      'manmade' = Building + Other Static Object;
    - kept as they are: Road, Vegetation, Sidewalk, Car, Motorcycle, Bus, Bicycle, Ground and
      Driveway (Ground and Driveway stay apart from Road and Sidewalk, as in ScaLR);
    - ignored: Smoke, Exhaust, Spray or rain and Reflection (sensor and weather artefacts with
      no object behind them), Emergency Vehicle (a car, van, truck or bus by shape), Personal
      Mobility Device and Motorized Scooter (neither bicycle nor motorcycle), Animals - Bird,
      Animals - Other and Rolling Containers (rare), and id 0 (no class of ``classes.json``).

    Reads the info files of ``tools/create_pandaset_infos.py`` (``lidar_points.lidar_path``
    and ``pts_semantic_mask_path``: uint8 raw ids, one per point). Use mmdet3d's
    ``LoadPointsFromFile(load_dim=6, use_dim=4)``, ``LoadAnnotations3D(with_seg_3d=True,
    seg_3d_dtype='np.uint8')`` and ``PointSegClassMapping`` in the pipeline
    (``configs/_base_/datasets/pandaset_seg.py``).

    Args:
        **kwargs: See :class:`mmdet3d.datasets.Seg3DDataset`.
    """

    #: the one class table of PandaSet in this project: the 17 evaluation classes, their
    #: colours, and PandaSet's raw ids (annotations/semseg/classes.json) -> training label
    #: (17 = ignored)
    METAINFO = dict(
        classes=('road', 'traffic_sign', 'barrier', 'pedestrian', 'vegetation', 'road_marking',
                 'sidewalk', 'manmade', 'traffic_cone', 'car', 'motorcycle', 'truck', 'bus',
                 'bicycle', 'other_vehicle', 'ground', 'driveway'),
        palette=[[255, 0, 255], [220, 220, 0], [255, 120, 50], [255, 0, 0], [0, 175, 0],
                 [170, 170, 255], [75, 0, 75], [230, 230, 250], [255, 240, 150], [0, 150, 245],
                 [200, 180, 0], [160, 32, 240], [255, 255, 0], [255, 192, 203], [0, 255, 255],
                 [150, 240, 80], [139, 137, 137]],
        seg_valid_class_ids=tuple(range(17)),
        seg_all_class_ids=tuple(range(17)),
        seg_label_mapping={
            0: 17,  # (unlabelled)
            1: 17,  # Smoke
            2: 17,  # Exhaust
            3: 17,  # Spray or rain
            4: 17,  # Reflection
            5: 4,  # Vegetation -> vegetation
            6: 15,  # Ground -> ground
            7: 0,  # Road -> road
            8: 5,  # Lane Line Marking -> road_marking
            9: 5,  # Stop Line Marking -> road_marking
            10: 5,  # Other Road Marking -> road_marking
            11: 6,  # Sidewalk -> sidewalk
            12: 16,  # Driveway -> driveway
            13: 9,  # Car -> car
            14: 11,  # Pickup Truck -> truck
            15: 11,  # Medium-sized Truck -> truck
            16: 11,  # Semi-truck -> truck
            17: 14,  # Towed Object -> other_vehicle
            18: 10,  # Motorcycle -> motorcycle
            19: 14,  # Other Vehicle - Construction Vehicle -> other_vehicle
            20: 14,  # Other Vehicle - Uncommon -> other_vehicle
            21: 14,  # Other Vehicle - Pedicab -> other_vehicle
            22: 17,  # Emergency Vehicle
            23: 12,  # Bus -> bus
            24: 17,  # Personal Mobility Device
            25: 17,  # Motorized Scooter
            26: 13,  # Bicycle -> bicycle
            27: 14,  # Train -> other_vehicle
            28: 14,  # Trolley -> other_vehicle
            29: 14,  # Tram / Subway -> other_vehicle
            30: 3,  # Pedestrian -> pedestrian
            31: 3,  # Pedestrian with Object -> pedestrian
            32: 17,  # Animals - Bird
            33: 17,  # Animals - Other
            34: 8,  # Pylons -> traffic_cone
            35: 2,  # Road Barriers -> barrier
            36: 1,  # Signs -> traffic_sign
            37: 8,  # Cones -> traffic_cone
            38: 1,  # Construction Signs -> traffic_sign
            39: 2,  # Temporary Construction Barriers -> barrier
            40: 17,  # Rolling Containers
            41: 7,  # Building -> manmade
            42: 7,  # Other Static Object -> manmade
        },
        max_label=42)

    def __init__(self,
                 data_root: Optional[str] = None,
                 ann_file: str = '',
                 metainfo: Optional[dict] = None,
                 data_prefix: dict = dict(pts='points', pts_semantic_mask='labels'),
                 pipeline: List = [],
                 modality: dict = dict(use_lidar=True, use_camera=False),
                 ignore_index: Optional[int] = None,
                 **kwargs) -> None:
        # mmdet3d reads the label map from the metainfo argument: start from METAINFO
        super().__init__(data_root=data_root, ann_file=ann_file,
                         metainfo=dict(copy.deepcopy(self.METAINFO), **(metainfo or {})),
                         data_prefix=data_prefix, pipeline=pipeline, modality=modality,
                         ignore_index=ignore_index, **kwargs)

    def get_seg_label_mapping(self, metainfo: dict) -> np.ndarray:
        """Raw id (0-``max_label``) -> training label; the ignored ids (and any id the table
        does not list) -> ``ignore_index`` (17 by default)."""
        num_classes = len(metainfo['classes'])
        mapping = np.full(metainfo['max_label'] + 1, self.ignore_index, dtype=np.int64)
        for raw, label in metainfo['seg_label_mapping'].items():
            mapping[raw] = label if label < num_classes else self.ignore_index
        return mapping
