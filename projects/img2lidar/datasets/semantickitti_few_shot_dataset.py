"""SemanticKITTI with the few-shot training subset of the image-to-lidar papers."""
from typing import List, Optional

from mmdet3d.datasets import SemanticKittiDataset
from mmdet3d.registry import DATASETS


@DATASETS.register_module()
class SemanticKittiFewShotDataset(SemanticKittiDataset):
    """mmdet3d's ``SemanticKittiDataset`` keeping every ``every_nth`` scan of the sorted scan
    list (SLidR's SemanticKITTI 1%: ``sorted(files)[::100]`` over sequences 00-07, 09, 10,
    which are the scans of mmdet3d's train info file).

    Args:
        every_nth (int, optional): Keep scans 0, n, 2n, ... of the scans sorted by path; None
            keeps all. 100 gives the 1% split.
        **kwargs: See ``SemanticKittiDataset``.
    """

    def __init__(self, every_nth: Optional[int] = None, **kwargs) -> None:
        if every_nth is not None and every_nth < 1:
            raise ValueError(f'every_nth must be >= 1, got {every_nth}')
        self.every_nth = every_nth
        super().__init__(**kwargs)

    def load_data_list(self) -> List[dict]:
        data_list = super().load_data_list()
        if self.every_nth is None:
            return data_list
        ordered = sorted(data_list, key=lambda d: d['lidar_points']['lidar_path'])
        return ordered[::self.every_nth]
