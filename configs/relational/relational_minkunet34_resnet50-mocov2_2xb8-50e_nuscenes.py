# Relational distillation: cross-modal |KQ^T - QQ^T| and intra-modal |KK^T - QQ^T|
# (Mahmoud, Harakeh, Waslander, ECCV 2024); the paper's weights were not available: 1 and 1.
# minkunet34 student, frozen ResNet-50 (MoCo v2) teacher, 600 nuScenes scenes, 50 epochs,
# batch 16 = 2 GPUs x 8, SGD lr 0.5, cosine.
_base_ = [
    '../_base_/models/minkunet34_student.py', '../_base_/models/resnet50_dilated_teacher.py',
    '../_base_/datasets/nuscenes_pretrain.py', '../_base_/schedules/pretrain_sgd_50e.py',
    '../_base_/default_runtime.py'
]
model = dict(
    data_preprocessor={{_base_.img_norm}},
    teacher={{_base_.teacher}},
    image_head={{_base_.image_head}},
    losses=dict(
        loss_rel=dict(type='RelationalLoss', lambda_cross=1.0, lambda_intra=1.0)))
