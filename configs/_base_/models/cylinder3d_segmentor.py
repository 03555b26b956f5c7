# mmdet3d's Cylinder3D segmentor with the pretraining student's voxel encoder and backbone,
# both initialised from a pretraining checkpoint: the model-level Pretrained init loads its
# voxel_encoder.* and backbone.* keys (SegVFE is a plain nn.Module without init_cfg; the other
# keys of the checkpoint are reported as unexpected and ignored). Cross-entropy + Lovasz
# (Cylinder3DHead). Set model.init_cfg=None for random initialisation.
pretrained = 'work_dirs/stslidr_cylinder3d_resnet50-mocov2_2xb8-50e_nuscenes/epoch_50.pth'
num_classes = 16
grid_shape = [480, 360, 32]
point_cloud_range = [0, -3.14159265359, -4, 50, 3.14159265359, 2]
model = dict(
    type='Cylinder3D',
    data_preprocessor=dict(
        type='PointVoxelDataPreprocessor',
        voxel=True,
        voxel_type='cylindrical',
        voxel_layer=dict(
            grid_shape=grid_shape,
            point_cloud_range=point_cloud_range,
            max_num_points=-1,
            max_voxels=-1)),
    voxel_encoder=dict(
        type='SegVFE',
        feat_channels=[64, 128, 256, 256],
        in_channels=6,
        with_voxel_center=True,
        feat_compression=16,
        grid_shape=grid_shape,
        point_cloud_range=point_cloud_range),
    backbone=dict(
        type='Asymm3DSpconv',
        grid_size=grid_shape,
        input_channels=16,
        base_channels=32,
        norm_cfg=dict(type='BN1d', eps=1e-5, momentum=0.1)),
    decode_head=dict(
        type='Cylinder3DHead',
        channels=128,
        num_classes=num_classes,
        ignore_index=num_classes,
        loss_ce=dict(type='mmdet.CrossEntropyLoss', use_sigmoid=False, class_weight=None,
                     avg_non_ignore=True, loss_weight=1.0),
        loss_lovasz=dict(type='LovaszLoss', loss_weight=1.0, reduction='none')),
    train_cfg=None,
    test_cfg=dict(),
    init_cfg=dict(type='Pretrained', checkpoint=pretrained))
