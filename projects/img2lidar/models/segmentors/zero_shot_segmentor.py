"""Zero-shot 3D semantic segmentation: point features against class text embeddings."""
import os.path as osp
from typing import Dict, List, Optional, Sequence

import torch
from mmdet3d.models.segmentors import Base3DSegmentor
from mmdet3d.registry import MODELS
from mmdet3d.structures import PointData
from mmdet3d.structures.det3d_data_sample import OptSampleList, SampleList
from mmdet3d.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.logging import MMLogger
from mmengine.runner import CheckpointLoader
from torch import Tensor
from torch.nn import functional as F

from ...file_integrity import check_checkpoint_file
from ..student_checkpoint import register_student_layout


@MODELS.register_module()
class ZeroShotSegmentor(Base3DSegmentor):
    """Label every point with the class whose text embedding is closest to its feature.

    The student was pretrained to match a language-aligned teacher (:class:`CLIPImageTeacher`),
    so its point features live in CLIP's joint space. Logits are the cosine similarities
    between each point feature and each row of the text embeddings (from
    ``tools/create_text_embeddings.py``); the prediction is their argmax, mapped by
    ``label_map`` and shifted by ``label_offset``. No 3D label is used.

    Weights: the student loads from a pretraining checkpoint of :class:`ImageLidarDistiller`,
    whose student parameters sit at the top level (``backbone.*``, ``projection.*``, and
    ``voxel_encoder.*`` for Cylinder3D); the teacher, 2D head and loss keys are ignored.
    Either give ``checkpoint`` (read when the model is built, every student key required), or
    pass the pretraining checkpoint to ``tools/test.py`` (``load_from``): this model's state
    dict uses the same top-level layout, so the Runner's loader fills the student too (it
    warns about the teacher's keys, which are unused here).

    Predictions follow mmdet3d's segmentors, so ``SegMetric`` works through ``tools/test.py``:
    each sample gets ``pred_pts_seg = PointData(pts_semantic_mask=(N_i,) int64)`` and
    ``pts_seg_logits = PointData(pts_seg_logits=(C, N_i))``. Labels must be valid class ids
    of the dataset: mmdet3d's ``seg_eval`` does not range-check predictions, so never map a
    row to the dataset's ignore index.

    Example (nuScenes lidarseg, labels 0-15 in the order of ``--classes nuscenes``)::

        model = dict(
            type='ZeroShotSegmentor',
            data_preprocessor=dict(type='PointVoxelDataPreprocessor', voxel=True,
                                   voxel_type='minkunet', batch_first=True, max_voxels=None,
                                   voxel_layer=dict(...)),  # as in pretraining
            student=dict(type='MinkUNetStudent', out_channels=512, backbone=dict(...)),
            text_embeddings='checkpoints/text_nuscenes_clip-b16.pth',
            checkpoint='work_dirs/clip_pretrain/epoch_50.pth')

    Args:
        student (dict): 3D student config (``MinkUNetStudent`` or ``Cylinder3DStudent``) with
            ``out_channels`` equal to the embedding size E.
        text_embeddings (str): File of ``tools/create_text_embeddings.py``: a dict with
            ``embeddings`` (C, E) and ``classes``, or a bare (C, E) tensor. Rows are
            L2-normalised again here.
        checkpoint (str, optional): Pretraining checkpoint to read the student from when
            built. None leaves it to ``load_from`` (or random, for tests).
        label_map (Sequence[int], optional): Label of each embedding row, e.g. to merge
            several prompts into one class. Defaults to row i -> label i.
        label_offset (int): Added to every predicted label (e.g. 1 when label 0 is
            'unlabelled'). Defaults to 0.
        data_preprocessor (dict): ``PointVoxelDataPreprocessor`` config, the voxelization of
            pretraining.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 student: ConfigType,
                 text_embeddings: str,
                 checkpoint: Optional[str] = None,
                 label_map: Optional[Sequence[int]] = None,
                 label_offset: int = 0,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.student = MODELS.build(student)
        embeddings, self.class_names = self._read_embeddings(text_embeddings)
        out_channels = self.student.projection.out_features
        if embeddings.shape[1] != out_channels:
            raise ValueError(f'{text_embeddings}: embeddings of size {embeddings.shape[1]}, '
                             f'but the student outputs {out_channels} channels')
        num_rows = embeddings.shape[0]
        lut = torch.arange(num_rows) if label_map is None else torch.as_tensor(
            list(label_map), dtype=torch.long)
        if lut.shape != (num_rows, ):
            raise ValueError(f'label_map has {lut.numel()} entries for {num_rows} embeddings')
        self.register_buffer('text_embeddings', F.normalize(embeddings.float(), dim=1),
                             persistent=False)
        self.register_buffer('label_lut', lut + int(label_offset), persistent=False)
        # a pretraining checkpoint's teacher, 2D head and loss keys are known and unused here
        register_student_layout(self, foreign=('teacher', 'image_head', 'losses'))
        if checkpoint is not None:
            self.load_student(checkpoint)

    @staticmethod
    def _read_embeddings(path: str):
        """(C, E) embeddings and the class names (None for a bare tensor) of a file."""
        if osp.isfile(path):  # torch.load checks no CRC: damage named here
            check_checkpoint_file(path)
        data = torch.load(path, map_location='cpu', weights_only=True)
        if isinstance(data, Tensor):
            return data, None
        if not isinstance(data, dict) or 'embeddings' not in data:
            raise ValueError(f'{path}: expected a tensor or a dict with "embeddings"')
        emb = data['embeddings']
        if emb.dim() != 2:
            raise ValueError(f'{path}: embeddings must be (C, E), got {tuple(emb.shape)}')
        return emb, data.get('classes')

    def load_student(self, checkpoint: str) -> None:
        """Load every student parameter from a pretraining checkpoint.

        Args:
            checkpoint (str): File whose state dict (under ``state_dict`` or at the top
                level, keys optionally prefixed with ``module.``) holds the student's keys at
                the top level (``backbone.*``, ``projection.*``, ...).
        """
        if osp.isfile(checkpoint):  # torch.load checks no CRC: damage named here
            check_checkpoint_file(checkpoint)
        ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
        state = {k[len('module.'):] if k.startswith('module.') else k: v
                 for k, v in state.items()}
        wanted = self.student.state_dict().keys()
        missing = [k for k in wanted if k not in state]
        if missing:
            raise KeyError(f'{checkpoint}: {len(missing)} student keys missing, e.g. '
                           f'{missing[:5]} (expected a pretraining checkpoint with the student '
                           'at the top level)')
        self.student.load_state_dict({k: state[k] for k in wanted}, strict=True)
        MMLogger.get_current_instance().info(
            f'ZeroShotSegmentor: {len(wanted)} student tensors loaded from {checkpoint}')

    # -- features and logits -----------------------------------------------------------------
    def extract_feat(self, batch_inputs: dict, batch_data_samples: SampleList) -> Tensor:
        """Unit-norm student features of every point of the batch, (sum N_i, E)."""
        feats = self.student(batch_inputs['voxels'],
                             [s.point2voxel_map for s in batch_data_samples])
        return F.normalize(feats, dim=1)

    def encode_decode(self, batch_inputs: dict, batch_data_samples: SampleList) -> Tensor:
        """Cosine logits of every point against every embedding row, (sum N_i, C)."""
        return self.extract_feat(batch_inputs, batch_data_samples) @ self.text_embeddings.T

    # -- modes --------------------------------------------------------------------------------
    def loss(self, batch_inputs: dict, batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Zero-shot segmentation has nothing to train."""
        raise NotImplementedError('ZeroShotSegmentor is zero-shot: it has no training loss')

    def predict(self, batch_inputs: dict, batch_data_samples: SampleList) -> SampleList:
        """Label the points of every sample.

        Args:
            batch_inputs (dict): ``points`` (list of (N_i, C)) and ``voxels`` from
                :class:`PointVoxelDataPreprocessor`.
            batch_data_samples (list[:obj:`Det3DDataSample`]): One per cloud, with
                ``point2voxel_map`` (N_i,).

        Returns:
            list[:obj:`Det3DDataSample`]: The samples with ``pred_pts_seg.pts_semantic_mask``
            (N_i,) int64 and ``pts_seg_logits.pts_seg_logits`` (C, N_i).
        """
        logits = self.encode_decode(batch_inputs, batch_data_samples)
        sizes: List[int] = [s.point2voxel_map.shape[0] for s in batch_data_samples]
        for sample, seg_logits in zip(batch_data_samples, logits.split(sizes)):
            pred = self.label_lut[seg_logits.argmax(dim=1)]
            sample.set_data({
                'pts_seg_logits': PointData(pts_seg_logits=seg_logits.T),
                'pred_pts_seg': PointData(pts_semantic_mask=pred),
            })
        return batch_data_samples

    def _forward(self, batch_inputs: dict, batch_data_samples: OptSampleList = None) -> Tensor:
        """Cosine logits, (sum N_i, C)."""
        return self.encode_decode(batch_inputs, batch_data_samples)
