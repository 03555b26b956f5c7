# The modern recipe (SuperFlow / LiMoE) with a dinov3-vitb16 teacher: the MinkUNet-34 student on
# SLidR's cylindrical voxels (intensity only, BN momentum 0.05), whole images resized to 224x448,
# 100 epochs of AdamW with a one-cycle schedule, batch 32 = 8 GPUs x 4. A method sets only its
# losses on top of this.
_base_ = [
    '../models/minkunet34-cyl_student.py', '../models/dinov3-vitb16_teacher.py',
    '../datasets/nuscenes_pretrain_224x448.py', '../schedules/pretrain_adamw_onecycle_100e.py',
    '../default_runtime.py'
]
model = _base_.teacher_model
