# Frozen DINOv2 ViT-L/14 teacher as ScaLR distils it: the last block's patch tokens before the
# final norm (1024 channels), no learned 2D head (bilinear x14 upsampling, align_corners=True):
# the student regresses the teacher's own features (its out_channels must be 1024). Weights:
#   python tools/convert_teacher_checkpoint.py dinov2_vitl14_pretrain.pth checkpoints/dinov2-vitl14
# or the hub's facebook/dinov2-large directory.
teacher_model = dict(
    teacher=dict(type='ViTTeacher', checkpoint='checkpoints/dinov2-vitl14', final_norm=False),
    image_head=dict(type='ImageProjectionHead', in_channels=1024, out_channels=1024,
                    project=False, scale_factor=14, align_corners=True))
