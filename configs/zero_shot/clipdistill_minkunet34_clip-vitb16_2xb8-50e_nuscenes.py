# Pretraining for zero-shot segmentation: a MinkUNet-34 student distilled from a dense CLIP
# ViT-B/16 teacher (MaskCLIP-style patch features in the joint image-text space). The 2D head
# does not project (project=False) and the student outputs E = 512, so the student's point
# features live in CLIP's text space. The CLIP checkpoint is a local transformers directory
# (config.json + model.safetensors); nothing is downloaded.
_base_ = [
    '../_base_/models/minkunet34_student.py', '../_base_/datasets/nuscenes_pretrain.py',
    '../_base_/schedules/pretrain_sgd_50e.py', '../_base_/default_runtime.py'
]
clip_checkpoint = 'checkpoints/clip-vit-base-patch16'
embed_dim = 512
model = dict(
    student=dict(out_channels=embed_dim),
    teacher=dict(type='CLIPImageTeacher', checkpoint=clip_checkpoint),
    image_head=dict(type='ImageProjectionHead', in_channels=embed_dim, out_channels=embed_dim,
                    project=False),
    losses=dict(loss_slidr=dict(type='SuperpixelInfoNCELoss', tau=0.07)))
