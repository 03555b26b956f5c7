# Relational distillation (Mahmoud, Harakeh, Waslander, ECCV 2024): the cross-modal
# |KQ^T - QQ^T| and intra-modal |KK^T - QQ^T| terms, with the 2D side as the teacher
# (detach_q: only the 3D features learn the structure), on top of SLidR's superpixel InfoNCE,
# which trains the 2D head. Without the stop gradient every k and q collapse to one vector
# (measured on the demo world: pos_sim -> 0.998, linear-probe mIoU 6.2 against 5.4 for random
# init, even with the InfoNCE term). The paper's exact weights were not available: 1 and 1.
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
        loss_slidr=dict(type='SuperpixelInfoNCELoss', tau=0.07),
        loss_rel=dict(type='RelationalLoss', lambda_cross=1.0, lambda_intra=1.0,
                      detach_q=True)))
