# Frozen DINOv2 ViT-B/14 teacher (SuperFlow / LiMoE): the last block's patch tokens before the
# final norm (768 channels, 16 x 32 for 224x448 images), ImageNet normalisation; the 2D head is a
# 1x1 conv to D = 64 and a x14 bilinear upsampling (align_corners=True). Weights: a local
# transformers directory, from the official release
#   python tools/convert_teacher_checkpoint.py dinov2_vitb14_pretrain.pth checkpoints/dinov2-vitb14
# or the hub's facebook/dinov2-base directory, downloaded beforehand.
teacher_model = dict(
    teacher=dict(type='ViTTeacher', checkpoint='checkpoints/dinov2-vitb14', final_norm=False),
    image_head=dict(type='ImageProjectionHead', in_channels=768, out_channels=64,
                    scale_factor=14, align_corners=True))
