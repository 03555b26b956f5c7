# Frozen DINOv3 ViT-B/16 teacher: the last block's patch tokens before the final norm (as the
# DINOv2 recipe; 768 channels, 14 x 28 for 224x448 images; class and 4 register tokens
# dropped), ImageNet normalisation; 2D head: 1x1 conv to D = 64 and a x16 bilinear upsampling.
# Weights: the hub's facebook/dinov3-vitb16-pretrain-lvd1689m directory (transformers layout),
# downloaded beforehand (its licence must be accepted on the hub).
teacher_model = dict(
    teacher=dict(type='ViTTeacher', checkpoint='checkpoints/dinov3-vitb16-pretrain-lvd1689m',
                 final_norm=False),
    image_head=dict(type='ImageProjectionHead', in_channels=768, out_channels=64,
                    scale_factor=16, align_corners=True))
