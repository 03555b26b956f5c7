# mmdet3d's MinkUNet segmentor with the MinkUNet-34 backbone of the pretraining student
# (same voxels and widths), initialised from a pretraining checkpoint through
# init_cfg Pretrained(prefix='backbone.'). Linear head, cross-entropy + Lovasz.
# Set model.backbone.init_cfg=None for the random-initialisation baseline.
pretrained = 'work_dirs/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes/epoch_50.pth'
num_classes = 16
model = dict(
    type='MinkUNet',
    data_preprocessor=dict(
        type='PointVoxelDataPreprocessor',
        voxel=True,
        voxel_type='minkunet',
        batch_first=True,
        max_voxels=None,
        voxel_layer=dict(
            max_num_points=-1,
            point_cloud_range=[-100, -100, -20, 100, 100, 20],
            voxel_size=[0.1, 0.1, 0.1],
            max_voxels=(-1, -1))),
    backbone=dict(
        type='MinkUNetBackbone',
        in_channels=4,
        num_stages=4,
        base_channels=32,
        encoder_channels=[32, 64, 128, 256],
        encoder_blocks=[2, 3, 4, 6],
        decoder_channels=[256, 128, 96, 96],
        decoder_blocks=[2, 2, 2, 2],
        block_type='basic',
        sparseconv_backend='spconv',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    decode_head=dict(
        type='MinkUNetLovaszHead',
        channels=96,
        num_classes=num_classes,
        dropout_ratio=0,
        ignore_index=num_classes,
        loss_decode=dict(type='mmdet.CrossEntropyLoss', avg_non_ignore=True),
        loss_lovasz=dict(type='LovaszLoss', loss_weight=1.0, reduction='none')),
    train_cfg=dict(),
    test_cfg=dict())
