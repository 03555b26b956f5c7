# PPKT baseline: point-level InfoNCE over 4096 random point-pixel pairs.
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
        loss_ppkt=dict(type='PPKTLoss', num_pairs=4096, tau=0.07)))
