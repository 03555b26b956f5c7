"""The pretraining model: student, frozen teacher, 2D head and loss heads."""
from typing import Dict, Iterable, Optional, Tuple, Union

import torch
from mmdet3d.registry import MODELS
from mmdet3d.structures.det3d_data_sample import SampleList
from mmdet3d.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.model import BaseModel
from torch import Tensor, nn

from ..engine import record_batch
from .distillation_features import LEVELS, DistillationFeatures
from .losses.distillation_loss import DIAGNOSTIC_PREFIX
from .pixel_features import PixelFeatures
from .point_pixel_pairs import BatchPairs, pair_features
from .student_checkpoint import register_student_layout
from .superpixel_pooling import TEACHER_POOLING, superpixel_pooling
from .sync_batch_norm import convert_sync_batchnorm


def diagnostic_key(head: str, term: str) -> str:
    """The log name of a head's diagnostic term: ``diag/<head name without 'loss'>/<figure>``
    (mmengine optimises every logged value whose name contains 'loss', so none may).

    >>> diagnostic_key('loss_st', 'diag/cos_q50')
    'diag/st/cos_q50'
    """
    short = head.replace('loss', '').strip('_') or 'head'
    return f'{DIAGNOSTIC_PREFIX}{short}/{term[len(DIAGNOSTIC_PREFIX):]}'


@MODELS.register_module()
class ImageLidarDistiller(BaseModel):
    """Self-supervised image-to-lidar distillation (SLidR, ST-SLidR, relational, baselines).

    One ``losses`` entry per loss head switches the method. Every step builds one
    :class:`DistillationFeatures` with the levels the heads declare
    (:class:`DistillationLoss`: pooled superpixel features and/or point-pixel pairs), pooling
    the raw teacher features only when a head reads them, and hands it to every head.

    The student's parameters are stored at the top level of checkpoints (``backbone.*``,
    ``voxel_encoder.*``, ``projection.*``), exactly as mmdet3d's MinkUNet and Cylinder3D
    segmentors name theirs, so a segmentor loads a pretrained backbone with
    ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')`` and no conversion
    (see :mod:`.student_checkpoint`).

    Args:
        student (dict): 3D student config (``MinkUNetStudent`` or ``Cylinder3DStudent``).
        teacher (dict): Frozen image teacher config (``FrozenImageTeacher``, ...).
        image_head (dict): Trainable 2D head config (``ImageProjectionHead``).
        losses (dict): Name -> loss config; names should contain 'loss' to be optimised.
        data_preprocessor (dict): ``PointVoxelDataPreprocessor`` config (voxels and images).
        gather_features (bool): In distributed training, gather every field of the step's
            features across processes before the losses, so negatives and relational matrices
            span the global batch and every process computes the global loss (gradients flow
            back through the gather). False (the default) is the reference behaviour: each
            process uses its local batch.
        sync_bn (bool): Synchronise the student's BatchNorm statistics across processes
            (:class:`SyncBatchNorm1d`, CPU and GPU). Defaults to False.
        teacher_pooling (str): How the raw teacher features are pooled per superpixel:
            ``'area'`` (the default; every superpixel that holds a pair gets one) or
            ``'nearest'`` (SLidR's and ST-SLidR's code: the map resized to the teacher's grid;
            small superpixels can get none, they are counted in the log as
            ``num_superpixels_without_e``). See :mod:`.superpixel_pooling`.
        teacher_chunk_size (int, optional): Images per teacher forward; the outputs are written
            into one preallocated tensor, so the teacher's activations take the memory of one
            chunk. None runs all images at once. Defaults to 2.
        pooling_chunk_elements (int): Bound on the elements of one chunk of the teacher pooling
            (see :func:`.superpixel_pooling.pool_teacher`). Defaults to 2**24.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 student: ConfigType,
                 teacher: ConfigType,
                 image_head: ConfigType,
                 losses: Dict[str, ConfigType],
                 data_preprocessor: OptConfigType = None,
                 gather_features: bool = False,
                 sync_bn: bool = False,
                 teacher_pooling: str = 'area',
                 teacher_chunk_size: Optional[int] = 2,
                 pooling_chunk_elements: int = 1 << 24,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if teacher_pooling not in TEACHER_POOLING:
            raise ValueError(f'teacher_pooling must be one of {TEACHER_POOLING}, got '
                             f'{teacher_pooling!r}')
        if teacher_chunk_size is not None and teacher_chunk_size < 1:
            raise ValueError(f'teacher_chunk_size must be None or >= 1, got {teacher_chunk_size}')
        self.teacher_pooling = teacher_pooling
        self.teacher_chunk_size = teacher_chunk_size
        self.pooling_chunk_elements = int(pooling_chunk_elements)
        self.gather_features = gather_features
        self.student = MODELS.build(student)
        if sync_bn:
            self.student = convert_sync_batchnorm(self.student)
        self.teacher = MODELS.build(teacher)
        self.image_head = MODELS.build(image_head)
        self.losses = nn.ModuleDict({name: MODELS.build(cfg) for name, cfg in losses.items()})
        for name, head in self.losses.items():
            if not hasattr(head, 'required_levels'):
                raise TypeError(f'losses.{name} ({type(head).__name__}) is not a '
                                'DistillationLoss: it must declare what it consumes')
            if getattr(head, 'uses_teacher_features', False) and \
                    'superpixel' not in head.required_levels():
                raise ValueError(f'losses.{name}: teacher features are pooled per superpixel '
                                 'only; use the superpixel level')
        self.levels = tuple(lv for lv in LEVELS if any(
            lv in head.required_levels() for head in self.losses.values()))
        self.pool_teacher = any(head.uses_teacher_features for head in self.losses.values())
        # levels whose every loss draws its own rows stay local in a gathered step
        self.drawn_levels = tuple(lv for lv in self.levels if all(
            getattr(head, 'draws_rows', False) for head in self.losses.values()
            if lv in head.required_levels()))
        register_student_layout(self)

    # -- features ---------------------------------------------------------------------------
    def extract_point_feat(self, inputs: dict, data_samples: SampleList) -> Tensor:
        """Student features of every point of the batch, (sum N_i, D), unit norm."""
        return self.student(inputs['voxels'])

    def run_teacher(self, imgs: Tensor) -> Tensor:
        """The frozen teacher on all images, ``teacher_chunk_size`` images at a time.

        Args:
            imgs (Tensor): Images, (I, 3, H, W).

        Returns:
            Tensor: Teacher features, (I, E, h, w).
        """
        n = imgs.shape[0]
        step = self.teacher_chunk_size or n
        if step >= n:
            return self.teacher(imgs)
        first = self.teacher(imgs[:step])
        out = first.new_empty((n, *first.shape[1:]))
        out[:step] = first
        del first
        for start in range(step, n, step):
            out[start:start + step] = self.teacher(imgs[start:start + step])
        return out

    def extract_img_feat(self, inputs: dict) -> Tuple[Tensor, PixelFeatures]:
        """Teacher features (I, E, h, w) of all images and the 2D head's per-pixel features
        (:class:`PixelFeatures`: read at the pixels a loss needs; ``.dense()`` gives the full
        (I, D, H, W) map)."""
        imgs = inputs['imgs']
        imgs = imgs.flatten(0, 1) if imgs.dim() == 5 else imgs
        teacher_feats = self.run_teacher(imgs)
        return teacher_feats, self.image_head.pixel_features(teacher_feats, imgs.shape[-2:])

    def extract_features(self,
                         inputs: dict,
                         data_samples: SampleList,
                         gather: bool,
                         levels: Optional[Iterable[str]] = None,
                         pool_teacher: Optional[bool] = None) -> DistillationFeatures:
        """Run student, teacher and head and build the step's features.

        Args:
            inputs (dict): ``points``, ``voxels``, ``imgs`` and ``pairs`` (a :class:`BatchPairs`
                dict) from the data preprocessor.
            data_samples (list[:obj:`Det3DDataSample`]): The samples (metainfo).
            gather (bool): Gather every field across processes (a level whose losses all
                draw their own rows, PPKT's, stays local with every process's row count).
            levels (Iterable[str], optional): Levels to build; those of the losses when None.
            pool_teacher (bool, optional): Pool the raw teacher features ``e``; when a loss
                reads them if None.

        Returns:
            DistillationFeatures: The step's features.
        """
        point_feats = self.extract_point_feat(inputs, data_samples)
        feats = self.build_features(point_feats, inputs, data_samples, levels, pool_teacher)
        return feats.gather(local_levels=self.drawn_levels) if gather else feats

    def build_features(self,
                       point_feats: Tensor,
                       inputs: dict,
                       data_samples: SampleList,
                       levels: Optional[Iterable[str]] = None,
                       pool_teacher: Optional[bool] = None) -> DistillationFeatures:
        """The local (not gathered) features of a batch from its point features.

        Args:
            point_feats (Tensor): Student features of every point, (sum N_i, D).
            inputs (dict): ``imgs`` and ``pairs`` from the data preprocessor.
            data_samples (list[:obj:`Det3DDataSample`]): The samples (metainfo).
            levels (Iterable[str], optional): Levels to build; those of the losses when None.
            pool_teacher (bool, optional): Pool ``e``; when a loss reads it if None.

        Returns:
            DistillationFeatures: The batch's features.
        """
        levels = self.levels if levels is None else tuple(levels)
        pool_teacher = self.pool_teacher if pool_teacher is None else pool_teacher
        teacher_feats, pixel_feats = self.extract_img_feat(inputs)
        pairs = BatchPairs(**inputs['pairs'])
        return DistillationFeatures(
            superpixel=superpixel_pooling(point_feats, pixel_feats,
                                          teacher_feats if pool_teacher else None, pairs,
                                          self.teacher_pooling, self.pooling_chunk_elements)
            if 'superpixel' in levels else None,
            pair=pair_features(point_feats, pixel_feats, pairs) if 'pair' in levels else None)

    # -- modes --------------------------------------------------------------------------------
    def loss(self, inputs: dict, data_samples: SampleList) -> Dict[str, Tensor]:
        """Named loss terms plus logged figures (``num_superpixels``, ``pos_sim`` and, with
        ``teacher_pooling='nearest'``, ``num_superpixels_without_e``).

        A head's term ``'loss'`` is logged under the head's config name, any other term ``t``
        as ``<name>_<t>``; a diagnostic figure ``'diag/<f>'`` as ``diag/<short>/<f>``
        (:func:`diagnostic_key`), detached and not optimised.
        """
        feats = self.extract_features(inputs, data_samples, gather=self.gather_features)
        out: Dict[str, Tensor] = {}
        for name, head in self.losses.items():
            for term, value in head.loss(feats).items():
                if term.startswith(DIAGNOSTIC_PREFIX):
                    out[diagnostic_key(name, term)] = value.detach()
                else:
                    out[name if term == 'loss' else f'{name}_{term}'] = value
        record_batch([s.metainfo.get('lidar_path') for s in data_samples], out)
        sp = feats.superpixel
        if sp is not None:
            with torch.no_grad():
                out['num_superpixels'] = sp.k.new_full((), float(sp.k.shape[0]))
                out['pos_sim'] = (sp.k * sp.q).sum(1).mean()
                if sp.num_without_e is not None and self.teacher_pooling == 'nearest':
                    out['num_superpixels_without_e'] = sp.num_without_e.float()
        return out

    def predict(self, inputs: dict, data_samples: SampleList) -> SampleList:
        """Attach to every sample its per-point features (``point_feats`` (N_i, D)) and the
        pooled features of its own superpixels (``pooled_k``, ``pooled_q`` (M_i, D)), for
        label-free metrics such as :class:`StructuralGapMetric`. Never gathers."""
        point_feats = self.extract_point_feat(inputs, data_samples)
        sp = self.build_features(point_feats, inputs, data_samples, levels=('superpixel', ),
                                 pool_teacher=False).superpixel
        start = 0
        for b, (points, sample) in enumerate(zip(inputs['points'], data_samples)):
            n = points.shape[0]
            rows = sp.sample_rows(b)
            sample.point_feats = point_feats[start:start + n]
            sample.pooled_k = sp.k[rows]
            sample.pooled_q = sp.q[rows]
            start += n
        return data_samples

    def _forward(self, inputs: dict, data_samples: Optional[SampleList] = None) -> Tensor:
        """Per-point student features, (sum N_i, D)."""
        return self.extract_point_feat(inputs, data_samples)

    def forward(self, inputs: dict, data_samples: Optional[SampleList] = None,
                mode: str = 'tensor') -> Union[Dict[str, Tensor], SampleList, Tensor]:
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._forward(inputs, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}": loss, predict or tensor')
