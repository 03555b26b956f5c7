"""Frozen vision-transformer teachers (DINO, DINOv2, DINOv3) through transformers, no torchvision.

The teacher reads a local Hugging Face model directory (``config.json`` plus weights, the
``save_pretrained`` layout; nothing is downloaded) and returns dense patch features
(I, E, H/p, W/p): the patch tokens of the chosen layer, without the class and register tokens,
in row-major patch order. Families (``model_type`` of the directory's config):

==========================  ========================================  =====================
family                      transformers class                        tokens
==========================  ========================================  =====================
``vit`` (DINO v1)           ``ViTModel`` (``add_pooling_layer=False``)  [CLS, patches]
``dinov2``                  ``Dinov2Model``                           [CLS, patches]
``dinov2_with_registers``   ``Dinov2WithRegistersModel``              [CLS, R registers, patches]
``dinov3_vit``              ``DINOv3ViTModel``                        [CLS, R registers, patches]
``dinov3_convnext``         ``DINOv3ConvNextModel``                   [pooled, patches] (stride 32)
==========================  ========================================  =====================

Non-square inputs (e.g. 224x448) work for every family: DINOv2 and DINOv2-with-registers
interpolate their position embeddings themselves, ``ViTModel`` is asked to
(``interpolate_pos_encoding=True``), DINOv3 ViT uses RoPE on per-axis normalised coordinates and
ConvNeXt is convolutional. The teacher normalises its RGB [0, 255] input with ImageNet's mean
and std, which every DINO family was trained with. Weights of the official DINOv2 release
(``dinov2_vitb14_pretrain.pth``...) convert to such a directory with
``tools/convert_teacher_checkpoint.py``.
"""
from typing import Optional, Sequence

import torch
from mmdet3d.registry import MODELS
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from torch import Tensor

from .image_normalization import IMAGENET_MEAN_STD, ImageNormalization

#: supported model_type -> whether it has register tokens (between CLS and the patches)
FAMILIES = {
    'vit': False,
    'dinov2': False,
    'dinov2_with_registers': True,
    'dinov3_vit': True,
    'dinov3_convnext': False,
}


@MODELS.register_module()
class ViTTeacher(BaseModule):
    """A DINO / DINOv2 / DINOv3 backbone from a local transformers directory, frozen.

    The weights are read when the teacher is built (the network's shape comes from the
    directory's ``config.json``); :meth:`init_weights` does nothing, so the Runner never
    re-initialises them. Parameters never require gradients, the model stays in eval mode
    whatever the surrounding model's mode (DINOv3 randomly rescales its RoPE coordinates in
    train mode), and the forward runs without gradient; under the caller's autocast (e.g.
    bf16) it runs in that precision.

    Args:
        checkpoint (str): Local transformers model directory.
        layer (int): Transformer block whose output is used, 1-based or negative (-1: the last
            block). For ConvNeXt, the stage (1-4, or -1 for the last). Defaults to -1.
        final_norm (bool): Apply the model's final LayerNorm to that output (as its
            ``last_hidden_state`` does). False gives the pre-norm output that ScaLR distils.
            For ConvNeXt the final norm only fits the last stage. Defaults to True.
        mean (Sequence[float]): Per-channel mean of RGB [0, 255] inputs. Defaults to
            ImageNet's.
        std (Sequence[float]): Their standard deviation. Defaults to ImageNet's.
        init_cfg (dict, optional): Unused (the weights come from ``checkpoint``).
    """

    def __init__(self, checkpoint: str, layer: int = -1, final_norm: bool = True,
                 mean: Sequence[float] = IMAGENET_MEAN_STD[0],
                 std: Sequence[float] = IMAGENET_MEAN_STD[1],
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.normalize = ImageNormalization(mean, std)
        # transformers takes seconds to import: only models that use a ViT teacher pay for it
        from transformers import AutoConfig, AutoModel

        config = AutoConfig.from_pretrained(checkpoint, local_files_only=True)
        self.family = config.model_type
        if self.family not in FAMILIES:
            raise ValueError(f'{checkpoint}: model_type {self.family!r} is not a supported '
                             f'teacher family; supported: {sorted(FAMILIES)}')
        kwargs = dict(add_pooling_layer=False) if self.family == 'vit' else {}
        self.model = AutoModel.from_pretrained(checkpoint, local_files_only=True,
                                               **kwargs).float()
        self.checkpoint = checkpoint
        self.final_norm = final_norm
        convnext = self.family == 'dinov3_convnext'
        self.num_layers = len(config.hidden_sizes) if convnext else int(
            config.num_hidden_layers)
        if not -self.num_layers <= layer <= self.num_layers or layer == 0:
            raise ValueError(f'{checkpoint}: layer must be in 1..{self.num_layers} or '
                             f'-{self.num_layers}..-1, got {layer}')
        self.layer = layer if layer > 0 else self.num_layers + 1 + layer
        if convnext:  # stage s has stride 4 * 2**(s - 1) and hidden_sizes[s - 1] channels
            self.patch_size = 4 * 2**(self.layer - 1)
            self.embed_dim = int(config.hidden_sizes[self.layer - 1])
            self.num_prefix_tokens = 1
        else:
            self.patch_size = int(config.patch_size)
            self.embed_dim = int(config.hidden_size)
            self.num_prefix_tokens = 1 + (int(config.num_register_tokens)
                                          if FAMILIES[self.family] else 0)
        if self.family == 'dinov3_convnext' and final_norm and self.layer != self.num_layers:
            raise ValueError(f'{checkpoint}: the final norm of a ConvNeXt fits its last stage '
                             f'only; use final_norm=False for stage {self.layer}')
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()

    def init_weights(self) -> None:
        """Nothing to initialise: the weights were read from ``checkpoint`` when built."""
        MMLogger.get_current_instance().info(
            f'ViTTeacher: {self.family} weights from {self.checkpoint} (loaded when built)')

    def train(self, mode: bool = True) -> 'ViTTeacher':
        """Stay in eval mode whatever ``mode`` is."""
        return super().train(False)

    def _final_norm(self):
        model = self.model
        for name in ('layernorm', 'norm', 'layer_norm'):
            if hasattr(model, name):
                return getattr(model, name)
        raise AttributeError(f'{type(model).__name__} has no final norm')

    @torch.no_grad()
    def forward(self, imgs: Tensor) -> Tensor:
        """Dense patch features.

        Args:
            imgs (Tensor): RGB images in [0, 255], shape (N, 3, H, W), H and W divisible by
                :attr:`patch_size`; normalised here.

        Returns:
            Tensor: Shape (N, E, H / p, W / p), E = :attr:`embed_dim`.
        """
        n, _, h, w = imgs.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f'ViTTeacher ({self.checkpoint}): image size {h}x{w} is not '
                             f'divisible by the patch size {p}')
        imgs = self.normalize(imgs)
        last = self.layer == self.num_layers
        kwargs = dict(interpolate_pos_encoding=True) if self.family == 'vit' else {}
        if last and self.final_norm:
            out = self.model(pixel_values=imgs, **kwargs)
            tokens = out.last_hidden_state
        else:
            out = self.model(pixel_values=imgs, output_hidden_states=True, **kwargs)
            hidden = out.hidden_states[self.layer]  # [0] is the embedding output
            if self.family == 'dinov3_convnext':  # stages are (N, C, h, w) already
                return hidden
            tokens = self._final_norm()(hidden) if self.final_norm else hidden
        patches = tokens[:, self.num_prefix_tokens:]
        return patches.transpose(1, 2).reshape(n, patches.shape[-1], h // p, w // p)
