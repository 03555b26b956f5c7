# mmdet3d's MinkUNet segmentor on the pretraining student's voxels and MinkUNet-34 backbone
# (read from the student base, so the two cannot drift apart), initialised from a pretraining
# checkpoint by init_cfg PretrainedStudent (the same for every student: --cfg-options
# model.init_cfg.checkpoint=PATH; model.init_cfg=None for random initialisation).
# Linear head, cross-entropy + Lovasz.
_base_ = ['./minkunet34_student.py']
pretrained = 'work_dirs/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes/epoch_50.pth'
num_classes = 16
model = dict(
    _delete_=True,
    type='MinkUNet',
    data_preprocessor=_base_.model.data_preprocessor,
    backbone=_base_.model.student.backbone,
    decode_head=dict(
        type='MinkUNetLovaszHead',
        channels=_base_.model.student.backbone.decoder_channels[-1],
        num_classes=num_classes,
        dropout_ratio=0,
        ignore_index=num_classes,
        loss_decode=dict(type='mmdet.CrossEntropyLoss', avg_non_ignore=True),
        loss_lovasz=dict(type='LovaszLoss', loss_weight=1.0, reduction='none')),
    train_cfg=dict(),
    test_cfg=dict(),
    init_cfg=dict(type='PretrainedStudent', checkpoint=pretrained))
