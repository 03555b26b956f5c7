"""The pretraining model: student, frozen teacher, 2D head and loss heads."""
from typing import Dict, List, Optional, Union

import torch
from mmdet3d.registry import MODELS
from mmdet3d.structures.det3d_data_sample import SampleList
from mmdet3d.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.model import BaseModel
from torch import Tensor, nn

from .gather_features import gather_rows
from .superpixel_pooling import PooledFeatures, superpixel_pooling
from .sync_batch_norm import convert_sync_batchnorm

#: children whose checkpoint keys keep their own prefix; the student's are stored at the top
OWN_PREFIXES = ('teacher.', 'image_head.', 'losses.', 'data_preprocessor.')


@MODELS.register_module()
class ImageLidarDistiller(BaseModel):
    """Self-supervised image-to-lidar distillation (SLidR, ST-SLidR, relational, baselines).

    One ``losses`` entry per loss head switches the method; every loss gets the pooled
    superpixel features (k, q, e) of :func:`superpixel_pooling`, except heads with
    ``input_level = 'pair'`` (PPKT), which get one row per point-pixel pair.

    The student's parameters are stored at the top level of checkpoints (``backbone.*``,
    ``voxel_encoder.*``, ``projection.*``), exactly as mmdet3d's MinkUNet and Cylinder3D
    segmentors name theirs, so a segmentor loads a pretrained backbone with
    ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')`` and no conversion.

    Args:
        student (dict): 3D student config (``MinkUNetStudent`` or ``Cylinder3DStudent``).
        teacher (dict): Frozen image teacher config (``FrozenImageTeacher``).
        image_head (dict): Trainable 2D head config (``ImageProjectionHead``).
        losses (dict): Name -> loss config; names should contain 'loss' to be optimised.
        data_preprocessor (dict): ``PointVoxelDataPreprocessor`` config (voxels and images).
        gather_features (bool): In distributed training, gather the pooled superpixel features
            of every process before the losses, so negatives and relational matrices span the
            global batch and every process computes the global loss (gradients flow back
            through the gather). False (the default) is the reference behaviour: each process
            uses its local batch. Pair-level heads (PPKT) always stay local.
        sync_bn (bool): Synchronise the student's BatchNorm statistics across processes
            (:class:`SyncBatchNorm1d`, CPU and GPU). Defaults to False.
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
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.gather_features = gather_features
        self.student = MODELS.build(student)
        if sync_bn:
            self.student = convert_sync_batchnorm(self.student)
        self.teacher = MODELS.build(teacher)
        self.image_head = MODELS.build(image_head)
        self.losses = nn.ModuleDict({name: MODELS.build(cfg) for name, cfg in losses.items()})
        self._register_state_dict_hook(_flatten_student_keys)
        self._register_load_state_dict_pre_hook(_nest_student_keys)

    # -- features ---------------------------------------------------------------------------
    def extract_point_feat(self, inputs: dict, data_samples: SampleList) -> Tensor:
        """Student features of every point of the batch, (sum N_i, D), unit norm."""
        return self.student(inputs['voxels'], [s.point2voxel_map for s in data_samples])

    def extract_img_feat(self, inputs: dict):
        """Teacher features (I, E, h, w) and 2D-head features (I, D, H, W) of all images."""
        imgs = inputs['imgs']
        imgs = imgs.flatten(0, 1) if imgs.dim() == 5 else imgs
        teacher_feats = self.teacher(imgs)
        return teacher_feats, self.image_head(teacher_feats, imgs.shape[-2:])

    @staticmethod
    def batch_pairs(inputs: dict, data_samples: SampleList) -> Dict[str, Tensor]:
        """Pairs and superpixel maps of the batch with batch-wide indices.

        Point indices are shifted by the points of the previous samples, image indices by
        their images, and superpixel ids by their ``num_superpixels``, so that ids are unique
        across the images of every sample of the batch.

        Returns:
            dict: ``point`` (P,), ``image`` (P,), ``pixel`` (P, 2) as (x, y), ``superpixel``
            (P,) and ``superpixels`` (I, H, W).
        """
        point_off = img_off = sp_off = 0
        out: Dict[str, List[Tensor]] = dict(point=[], image=[], pixel=[], superpixel=[],
                                            superpixels=[])
        for points, sample in zip(inputs['points'], data_samples):
            pairs = sample.pairs
            out['point'].append(pairs.point + point_off)
            out['image'].append(pairs.cam + img_off)
            out['pixel'].append(pairs.pixel)
            out['superpixel'].append(pairs.superpixel + sp_off)
            out['superpixels'].append(sample.superpixels + sp_off)
            point_off += points.shape[0]
            img_off += sample.superpixels.shape[0]
            sp_off += int(sample.metainfo['num_superpixels'])
        return {k: torch.cat(v) for k, v in out.items()}

    def pool(self, inputs: dict, data_samples: SampleList):
        """Run student, teacher and head, and pool over superpixels.

        Returns:
            tuple: :class:`PooledFeatures`, the batch pairs, point features (N, D) and
            pixel features (I, D, H, W).
        """
        point_feats = self.extract_point_feat(inputs, data_samples)
        teacher_feats, pixel_feats = self.extract_img_feat(inputs)
        pairs = self.batch_pairs(inputs, data_samples)
        pooled = superpixel_pooling(point_feats, pixel_feats, teacher_feats,
                                    pairs['superpixels'], pairs['point'], pairs['superpixel'])
        if self.gather_features:
            pooled = PooledFeatures(k=gather_rows(pooled.k), q=gather_rows(pooled.q),
                                    e=gather_rows(pooled.e), ids=pooled.ids,
                                    num_pairs=pooled.num_pairs)
        return pooled, pairs, point_feats, pixel_feats

    # -- modes --------------------------------------------------------------------------------
    def loss(self, inputs: dict, data_samples: SampleList) -> Dict[str, Tensor]:
        """Named losses plus logged figures (``num_superpixels``, ``pos_sim``)."""
        pooled, pairs, point_feats, pixel_feats = self.pool(inputs, data_samples)
        out: Dict[str, Tensor] = {}
        for name, head in self.losses.items():
            if getattr(head, 'input_level', 'superpixel') == 'pair':
                k = point_feats.index_select(0, pairs['point'])
                q = pixel_feats[pairs['image'], :, pairs['pixel'][:, 1], pairs['pixel'][:, 0]]
                out[name] = head(k, q)
            else:
                out[name] = head(pooled.k, pooled.q, pooled.e)
        with torch.no_grad():
            out['num_superpixels'] = torch.tensor(float(pooled.k.shape[0]),
                                                  device=pooled.k.device)
            out['pos_sim'] = (pooled.k * pooled.q).sum(1).mean()
        return out

    def predict(self, inputs: dict, data_samples: SampleList) -> SampleList:
        """Attach to every sample its per-point features (``point_feats`` (N_i, D)) and the
        pooled features of its own superpixels (``pooled_k``, ``pooled_q`` (M_i, D)), for
        label-free metrics such as :class:`StructuralGapMetric`. Never gathers."""
        gather, self.gather_features = self.gather_features, False
        try:
            pooled, _, point_feats, _ = self.pool(inputs, data_samples)
        finally:
            self.gather_features = gather
        start, sp_start = 0, 0
        for points, sample in zip(inputs['points'], data_samples):
            n = points.shape[0]
            sp_end = sp_start + int(sample.metainfo['num_superpixels'])
            rows = (pooled.ids >= sp_start) & (pooled.ids < sp_end)
            sample.point_feats = point_feats[start:start + n]
            sample.pooled_k = pooled.k[rows]
            sample.pooled_q = pooled.q[rows]
            start, sp_start = start + n, sp_end
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


def _flatten_student_keys(module: nn.Module, state_dict: dict, prefix: str, local_metadata):
    """State-dict hook: ``student.backbone.x`` -> ``backbone.x`` (mmdet3d segmentor layout)."""
    head = prefix + 'student.'
    for key in [k for k in state_dict if k.startswith(head)]:
        state_dict[prefix + key[len(head):]] = state_dict.pop(key)
    return state_dict


def _nest_student_keys(state_dict: dict, prefix: str, *args, **kwargs) -> None:
    """Load pre-hook, the inverse of :func:`_flatten_student_keys`."""
    own = tuple(prefix + p for p in OWN_PREFIXES) + (prefix + 'student.', )
    for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(own)]:
        state_dict[prefix + 'student.' + key[len(prefix):]] = state_dict.pop(key)
