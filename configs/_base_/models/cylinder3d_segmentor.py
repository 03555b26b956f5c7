# mmdet3d's Cylinder3D segmentor on the pretraining student's voxels, voxel encoder and
# backbone (read from the student base), initialised from a pretraining checkpoint by init_cfg
# PretrainedStudent (voxel_encoder.* and backbone.*; --cfg-options model.init_cfg.checkpoint=PATH,
# model.init_cfg=None for random initialisation). Cross-entropy + Lovasz (Cylinder3DHead).
_base_ = ['./cylinder3d_student.py']
pretrained = 'work_dirs/stslidr_cylinder3d_resnet50-mocov2_2xb8-50e_nuscenes/epoch_50.pth'
num_classes = 16
model = dict(
    _delete_=True,
    type='Cylinder3D',
    data_preprocessor=_base_.model.data_preprocessor,
    voxel_encoder=_base_.model.student.voxel_encoder,
    backbone=_base_.model.student.backbone,
    decode_head=dict(
        type='Cylinder3DHead',
        channels=4 * _base_.model.student.backbone.base_channels,
        num_classes=num_classes,
        ignore_index=num_classes,
        loss_ce=dict(type='mmdet.CrossEntropyLoss', use_sigmoid=False, class_weight=None,
                     avg_non_ignore=True, loss_weight=1.0),
        loss_lovasz=dict(type='LovaszLoss', loss_weight=1.0, reduction='none')),
    train_cfg=None,
    test_cfg=dict(),
    init_cfg=dict(type='PretrainedStudent', checkpoint=pretrained))
