# ScaLR-style distillation (Puy et al., CVPR 2024): the student regresses a frozen DINOv2
# ViT-L/14's pre-norm patch features (1024 channels, no learned 2D head) at every point-pixel
# pair, whole images resized to 224x448, AdamW lr 0.002 with warm-up and cosine, 25 epochs,
# batch 8. ScaLR's loss is the L2 distance of the unit features, sqrt(2 - 2 cos); this one is
# 1 - cos (the same minimiser). ScaLR's student is WaffleIron; here the MinkUNet-34.
_base_ = [
    '../_base_/models/minkunet34-cyl_student.py', '../_base_/models/dinov2-vitl14_teacher.py',
    '../_base_/datasets/nuscenes_pretrain_224x448.py',
    '../_base_/schedules/pretrain_adamw_cosine_25e.py', '../_base_/default_runtime.py'
]
model = dict(student=dict(out_channels=1024),
             losses=dict(loss_sim=dict(type='SimilarityLoss', level='pair')),
             **_base_.teacher_model)
train_dataloader = dict(batch_size=8)
