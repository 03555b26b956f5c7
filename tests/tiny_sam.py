"""A tiny random SAM (transformers' SamModel of 64x64 inputs, as transformers' own tests build
one) and its image processor, written with save_pretrained: a local checkpoint folder for the
``sam`` region generator, offline."""
from pathlib import Path

import torch


def write_tiny_sam(path: Path) -> Path:
    """Write the model and its processor to ``path``; returns ``path``."""
    from transformers import SamConfig, SamModel
    from transformers.models.sam.configuration_sam import (SamMaskDecoderConfig,
                                                           SamPromptEncoderConfig,
                                                           SamVisionConfig)
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil
    torch.manual_seed(0)
    config = SamConfig(
        vision_config=SamVisionConfig(hidden_size=32, output_channels=16, num_hidden_layers=2,
                                      num_attention_heads=2, image_size=64, patch_size=8,
                                      window_size=4, global_attn_indexes=[1], mlp_dim=64,
                                      num_pos_feats=8),
        prompt_encoder_config=SamPromptEncoderConfig(hidden_size=16, image_size=64,
                                                     patch_size=8, mask_input_channels=4),
        mask_decoder_config=SamMaskDecoderConfig(hidden_size=16, mlp_dim=32,
                                                 num_attention_heads=2, iou_head_hidden_dim=16))
    SamModel(config).eval().save_pretrained(path)
    SamImageProcessorPil(size={'longest_edge': 64}, pad_size={'height': 64, 'width': 64},
                         mask_size={'longest_edge': 16},
                         mask_pad_size={'height': 16, 'width': 16}).save_pretrained(path)
    return path
