"""A frozen CLIP teacher with dense, text-aligned patch features (MaskCLIP)."""
from typing import Optional

import torch
from mmdet3d.registry import MODELS
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from torch import Tensor
from torch.nn import functional as F

from .image_normalization import CLIP_MEAN_STD, ImageNormalization



@MODELS.register_module()
class CLIPImageTeacher(BaseModule):
    """CLIP ViT image tower as a frozen dense teacher, MaskCLIP style.

    CLIP aligns only its pooled class token with text. MaskCLIP (Zhou et al., "Extract Free
    Dense Labels from CLIP", ECCV 2022) gets per-patch features in the same joint image-text
    space by skipping the query-key attention of the last transformer block: every token goes
    through the block's value path only, ``v = out_proj(v_proj(layer_norm1(x)))``, so each patch
    keeps its own content instead of a mix dominated by global tokens. As in MaskCLIP's
    reference implementation, the block's residual and MLP are then applied to ``v``
    (``residual_ffn=True``: ``v = x + v``; ``v = v + mlp(layer_norm2(v))``), followed by CLIP's
    ``post_layernorm`` and ``visual_projection``. With ``residual_ffn=False`` the value
    projection's output goes straight to ``post_layernorm`` (the variant ClearCLIP reports as
    less noisy). The features are L2-normalised per location and can be compared by cosine
    with the text embeddings of ``tools/create_text_embeddings.py``.

    The weights are read when the teacher is built (the network's shape comes from the
    checkpoint's ``config.json``); :meth:`init_weights` does nothing, so the Runner never
    re-initialises them. Parameters never require gradients and the tower stays in eval mode
    even when the surrounding model is put in train mode.

    Checkpoint: a local transformers CLIP directory, as written by
    ``CLIPModel.save_pretrained`` or downloaded from the Hugging Face hub beforehand
    (``config.json`` plus ``model.safetensors`` or ``pytorch_model.bin``; e.g.
    ``openai/clip-vit-base-patch16``). It is opened with ``local_files_only=True``: nothing is
    downloaded. OpenAI's original ``.pt`` files (e.g. ``ViT-B-16.pt``) convert offline with the
    script ``src/transformers/models/clip/convert_clip_original_pytorch_to_hf.py`` of
    transformers' source repository (not shipped in the wheel): ``--checkpoint_path
    ViT-B-16.pt --pytorch_dump_folder_path DIR --config_path CONFIG`` where ``CONFIG`` is a
    ``config.json`` of the same architecture (without it the script assumes ViT-B/32). It
    imports OpenAI's ``clip`` package, which needs torchvision, so run it in another
    environment, not in this project's venv. Copy the tokenizer files (``vocab.json``,
    ``merges.txt``, ``tokenizer_config.json``...) into ``DIR`` for
    ``tools/create_text_embeddings.py``.

    Images: RGB in [0, 255]; the teacher normalises them with CLIP's statistics
    (:data:`CLIP_MEAN_STD`), not ImageNet's. Any height and width divisible by the patch size
    work: the position embeddings are interpolated (bicubic) to the patch grid.

    Args:
        checkpoint (str): Local transformers CLIP directory (see above).
        residual_ffn (bool): Keep the last block's residual and MLP on the value path, as
            MaskCLIP's reference code does. Defaults to True.
        init_cfg (dict, optional): Unused (the weights come from ``checkpoint``).
    """

    def __init__(self, checkpoint: str, residual_ffn: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        # transformers takes seconds to import: only models that use CLIP pay for it
        from transformers import CLIPModel

        clip = CLIPModel.from_pretrained(checkpoint, local_files_only=True)
        self.normalize = ImageNormalization(*CLIP_MEAN_STD)
        self.checkpoint = checkpoint
        self.residual_ffn = residual_ffn
        self.vision_model = clip.vision_model.float()
        self.visual_projection = clip.visual_projection.float()
        self.patch_size = int(clip.config.vision_config.patch_size)
        self.embed_dim = int(clip.config.projection_dim)
        del clip  # the text tower is not needed here
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def init_weights(self) -> None:
        """Nothing to initialise: the weights were read from ``checkpoint`` when built."""
        MMLogger.get_current_instance().info(
            f'CLIPImageTeacher: weights from {self.checkpoint} (loaded when built)')

    def train(self, mode: bool = True) -> 'CLIPImageTeacher':
        """Stay in eval mode whatever ``mode`` is."""
        return super().train(False)

    def value_path(self, x: Tensor) -> Tensor:
        """MaskCLIP's last block: the value path instead of attention.

        Args:
            x (Tensor): Tokens entering the last block, shape (N, L, C).

        Returns:
            Tensor: Tokens leaving it, shape (N, L, C) (before ``post_layernorm``).
        """
        block = self.vision_model.encoder.layers[-1]
        attn = block.self_attn
        v = attn.out_proj(attn.v_proj(block.layer_norm1(x)))
        if self.residual_ffn:
            v = x + v
            v = v + block.mlp(block.layer_norm2(v))
        return v

    @torch.no_grad()
    def forward(self, imgs: Tensor) -> Tensor:
        """Dense teacher features in CLIP's joint image-text space.

        Args:
            imgs (Tensor): RGB images in [0, 255], shape (N, 3, H, W), H and W divisible by
                the patch size p; normalised here with CLIP's statistics.

        Returns:
            Tensor: Unit-norm features, shape (N, E, H / p, W / p), E = :attr:`embed_dim`.
        """
        n, _, h, w = imgs.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f'CLIPImageTeacher: image size {h}x{w} is not divisible by the '
                             f'patch size {p}')
        vision = self.vision_model
        imgs = self.normalize(imgs.float())
        x = vision.embeddings(imgs.to(vision.embeddings.patch_embedding.weight.dtype),
                              interpolate_pos_encoding=True)
        x = vision.pre_layrnorm(x)
        for layer in vision.encoder.layers[:-1]:
            x = layer(x, None)
            x = x[0] if isinstance(x, tuple) else x
        x = self.visual_projection(vision.post_layernorm(self.value_path(x)))
        x = x[:, 1:].transpose(1, 2).reshape(n, -1, h // p, w // p)  # drop the class token
        return F.normalize(x, dim=1)
