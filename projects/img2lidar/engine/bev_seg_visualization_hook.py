"""Bird's-eye views of ground-truth and predicted point labels at test time, without open3d."""
import os.path as osp
from typing import List, Optional, Sequence

import cv2
import numpy as np
from mmdet3d.registry import HOOKS
from mmdet3d.structures import Det3DDataSample
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.utils import mkdir_or_exist
from torch import Tensor

from ..visualization import bev_labels_figure


@HOOKS.register_module()
class BEVSegVisualizationHook(Hook):
    """Draw every test sample of a segmentor as bird's-eye views of its ground-truth and
    predicted labels, in the dataset's palette with a legend of its class names.

    mmdet3d's ``Det3DVisualizationHook`` draws point clouds with open3d, which this project
    does not install (docs/dependencies.md) and which needs a display. This hook draws with
    OpenCV (:func:`projects.img2lidar.visualization.bev_labels_figure`, the picture of
    ``tools/visualize.py``) and writes ``<test_out_dir>/<lidar file>.png`` per sample, the
    lidar file's path relative to the dataset's data root with its folders joined by ``_``
    (so that scans of several SemanticKITTI sequences do not overwrite each other).
    ``tools/test.py --show-dir DIR --task lidar_seg`` sets it up. It takes
    ``Det3DVisualizationHook``'s arguments, so that the tool configures either the same way.

    The points drawn are those of the test batch. Under test-time augmentation
    (``tools/test.py --tta``) they are those of the first augmented view, which this project's
    ``tta_pipeline`` keeps as the identity; the predictions are the merged ones.

    Args:
        draw (bool): Whether to draw at all (``tools/test.py`` turns it on with ``--show`` or
            ``--show-dir``). Defaults to False.
        interval (int): Unused: every test sample is drawn. Kept for
            ``Det3DVisualizationHook``'s arguments. Defaults to 50.
        score_thr (float): Unused: segmentations have no scores. Defaults to 0.3.
        show (bool): Also show each picture in a window (needs a display). Defaults to False.
        vis_task (str): Must be ``'lidar_seg'``. Defaults to ``'lidar_seg'``.
        wait_time (float): Seconds each shown picture stays up; 0 or less waits for a key.
            Defaults to 0.
        test_out_dir (str, optional): Folder of the pictures; a relative one lies under
            ``<work_dir>/<timestamp>/``, as with mmdet3d's hook. None writes nothing.
        draw_gt (bool): Draw the ground truth (from ``eval_ann_info`` or ``gt_pts_seg``,
            where the sample has it). Defaults to True.
        draw_pred (bool): Draw the prediction. Defaults to True.
        bev_size (int): Side of each view in pixels. Defaults to 400.
        bev_resolution (float): Metres per pixel. Defaults to 0.2 (80 m x 80 m).
    """

    def __init__(self,
                 draw: bool = False,
                 interval: int = 50,
                 score_thr: float = 0.3,
                 show: bool = False,
                 vis_task: str = 'lidar_seg',
                 wait_time: float = 0.,
                 test_out_dir: Optional[str] = None,
                 draw_gt: bool = True,
                 draw_pred: bool = True,
                 bev_size: int = 400,
                 bev_resolution: float = 0.2) -> None:
        if vis_task != 'lidar_seg':
            raise ValueError(f"BEVSegVisualizationHook draws point labels (vis_task='lidar_seg'),"
                             f" got vis_task={vis_task!r}; detections need mmdet3d's "
                             'Det3DVisualizationHook')
        if not (draw_gt or draw_pred):
            raise ValueError('BEVSegVisualizationHook: draw_gt and draw_pred are both False')
        self.draw = draw
        self.interval = interval
        self.score_thr = score_thr
        self.show = show
        self.vis_task = vis_task
        self.wait_time = wait_time
        self.test_out_dir = test_out_dir
        self.draw_gt = draw_gt
        self.draw_pred = draw_pred
        self.bev_size = bev_size
        self.bev_resolution = bev_resolution
        self._out_dir: Optional[str] = None
        self._data_root = ''
        self._classes: List[str] = []
        self._palette: List[List[int]] = []
        self._drawn = 0

    def before_test(self, runner) -> None:
        """Read the test dataset's classes and palette and make the picture folder."""
        if not self.draw:
            return
        dataset = runner.test_dataloader.dataset
        meta = dataset.metainfo
        if 'classes' not in meta or 'palette' not in meta:
            raise KeyError(f'{type(dataset).__name__}: BEVSegVisualizationHook needs the '
                           "dataset's metainfo 'classes' and 'palette', found "
                           f'{sorted(meta)}')
        self._classes = list(meta['classes'])
        self._palette = [list(c) for c in meta['palette']]
        self._data_root = getattr(dataset, 'data_root', None) or ''
        if self.test_out_dir is not None:
            self._out_dir = osp.join(runner.work_dir, runner.timestamp, self.test_out_dir)
            mkdir_or_exist(self._out_dir)
            print_log(f'BEVSegVisualizationHook: pictures go to {self._out_dir}',
                      logger='current')

    def after_test_iter(self, runner, batch_idx: int, data_batch: dict,
                        outputs: Sequence[Det3DDataSample]) -> None:
        """Draw every sample of the batch: write its picture and/or show it."""
        if not self.draw:
            return
        for points, sample in zip(self._batch_points(data_batch), outputs):
            self._drawn += 1
            figure = self.draw_sample(points.detach().cpu().numpy(), sample)
            if self._out_dir is not None:
                cv2.imwrite(osp.join(self._out_dir, self.file_name(sample)), figure)
            if self.show:
                cv2.imshow('test sample (BEVSegVisualizationHook)', figure)
                cv2.waitKey(int(self.wait_time * 1000) if self.wait_time > 0 else 0)

    @staticmethod
    def _batch_points(data_batch: dict) -> List[Tensor]:
        """The clouds of a test batch, each (N_i, C); the first view's under test-time
        augmentation (whose batch holds one input dict per view)."""
        inputs = data_batch['inputs']
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return inputs['points']

    def draw_sample(self, points: np.ndarray, sample: Det3DDataSample) -> np.ndarray:
        """The picture of one sample: ground truth and/or prediction, and the legend.

        Args:
            points (np.ndarray): The cloud, (N, C) with x, y in the first columns.
            sample (:obj:`Det3DDataSample`): Its prediction ``pred_pts_seg.pts_semantic_mask``
                (N,) and, where present, its ground truth.

        Returns:
            np.ndarray: The picture, BGR uint8.
        """
        label_sets = []
        gt = self.ground_truth(sample) if self.draw_gt else None
        if gt is not None:
            label_sets.append(('ground truth', gt))
        if self.draw_pred:
            label_sets.append(('prediction', _numpy(sample.pred_pts_seg.pts_semantic_mask)))
        for title, labels in label_sets:
            if labels.shape != (points.shape[0], ):
                raise ValueError(f'{sample.metainfo.get("lidar_path", "a test sample")}: '
                                 f'{points.shape[0]} points but {title} labels of shape '
                                 f'{labels.shape}')
        return bev_labels_figure(points[:, :2], label_sets, self._classes, self._palette,
                                 self.bev_size, self.bev_resolution)

    @staticmethod
    def ground_truth(sample: Det3DDataSample) -> Optional[np.ndarray]:
        """The sample's point labels for evaluation (``eval_ann_info``, what SegMetric
        reads), else its packed ``gt_pts_seg``, else None."""
        eval_ann = sample.get('eval_ann_info', None)
        if eval_ann is not None and eval_ann.get('pts_semantic_mask') is not None:
            return _numpy(eval_ann['pts_semantic_mask'])
        gt = sample.get('gt_pts_seg', None)
        if gt is not None and 'pts_semantic_mask' in gt:
            return _numpy(gt.pts_semantic_mask)
        return None

    def file_name(self, sample: Det3DDataSample) -> str:
        """``<lidar path relative to the data root, folders joined by '_'>.png`` without the
        lidar file's extensions; ``sample_<n>.png`` (the n-th drawn by this process) for a
        sample without a lidar path."""
        lidar_path = sample.metainfo.get('lidar_path')
        if lidar_path is None:
            return f'sample_{self._drawn}.png'
        rel = osp.relpath(lidar_path, self._data_root) if self._data_root else lidar_path
        if rel.startswith('..'):
            rel = osp.basename(lidar_path)
        folder, base = osp.split(osp.normpath(rel))
        parts = [p for p in folder.split(osp.sep) if p] + [base.split('.')[0]]
        return '_'.join(parts) + '.png'


def _numpy(labels) -> np.ndarray:
    """Labels as a flat int64 numpy array, from a tensor or an array."""
    if isinstance(labels, Tensor):
        labels = labels.detach().cpu().numpy()
    return np.asarray(labels).astype(np.int64).reshape(-1)
