"""SemanticKITTI with the few-shot training subset of the image-to-lidar papers."""
import copy
from typing import List, Optional

from mmdet3d.datasets import SemanticKittiDataset
from mmdet3d.registry import DATASETS

from .info_file_checks import require_info_file, require_samples
from .info_file_io import checked_info_file


@DATASETS.register_module()
class SemanticKittiFewShotDataset(SemanticKittiDataset):
    """mmdet3d's ``SemanticKittiDataset`` keeping every ``every_nth`` scan of the sorted scan
    list (SLidR's SemanticKITTI 1%: ``sorted(files)[::100]`` over sequences 00-07, 09, 10,
    which are the scans of mmdet3d's train info file), with the class table, palette and label
    map in :attr:`METAINFO` (configs need not restate them).

    Args:
        every_nth (int, optional): Keep scans 0, n, 2n, ... of the scans sorted by path; None
            keeps all. 100 gives the 1% split.
        **kwargs: See ``SemanticKittiDataset``.
    """

    #: the one class table of SemanticKITTI in this project: the 19 classes with
    #: semantic-kitti.yaml's names (mmdet3d's ``SemanticKittiDataset`` writes 'bus', 'trunck'
    #: and 'terrian' for 'other-vehicle', 'trunk' and 'terrain'), its palette, and its learning
    #: map from raw labels to the 19 classes (19 = ignored)
    METAINFO = dict(
        SemanticKittiDataset.METAINFO,
        classes=('car', 'bicycle', 'motorcycle', 'truck', 'other-vehicle', 'person', 'bicyclist',
                 'motorcyclist', 'road', 'parking', 'sidewalk', 'other-ground', 'building',
                 'fence', 'vegetation', 'trunk', 'terrain', 'pole', 'traffic-sign'),
        seg_label_mapping={0: 19, 1: 19, 10: 0, 11: 1, 13: 4, 15: 2, 16: 4, 18: 3, 20: 4, 30: 5,
                           31: 6, 32: 7, 40: 8, 44: 9, 48: 10, 49: 11, 50: 12, 51: 13, 52: 19,
                           60: 8, 70: 14, 71: 15, 72: 16, 80: 17, 81: 18, 99: 19, 252: 0, 253: 6,
                           254: 5, 255: 7, 256: 4, 257: 4, 258: 3, 259: 4},
        max_label=259)

    def __init__(self, every_nth: Optional[int] = None, metainfo: Optional[dict] = None,
                 **kwargs) -> None:
        if every_nth is not None and every_nth < 1:
            raise ValueError(f'every_nth must be >= 1, got {every_nth}')
        self.every_nth = every_nth
        # mmdet3d reads the label map from the metainfo argument: start from METAINFO; a
        # config that names its own classes without a palette gets METAINFO's colours of
        # those classes (mmdet3d picks them when no palette is given)
        metainfo = dict(metainfo or {})
        defaults = copy.deepcopy(self.METAINFO)
        if 'classes' in metainfo and 'palette' not in metainfo:
            defaults.pop('palette')
        super().__init__(metainfo=dict(defaults, **metainfo), **kwargs)

    def load_data_list(self) -> List[dict]:
        """The info file's scans (every ``every_nth`` of them); a missing info file or an empty
        split is an error naming the file (and the command that makes it)."""
        require_info_file(self)
        with checked_info_file(self.ann_file):  # damage: an error naming the file
            data_list = super().load_data_list()
        require_samples(self, data_list)
        if self.every_nth is None:
            return data_list
        ordered = sorted(data_list, key=lambda d: d['lidar_points']['lidar_path'])
        return ordered[::self.every_nth]
