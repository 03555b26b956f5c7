# Cylinder3D student: mmdet3d's SegVFE + Asymm3DSpconv on cylindrical voxels (rho, phi, z).
# Sparse convolutions are spconv 2 on every device (projects/img2lidar/compat.py).
grid_shape = [480, 360, 32]
point_cloud_range = [0, -3.14159265359, -4, 50, 3.14159265359, 2]
model = dict(
    type='ImageLidarDistiller',
    data_preprocessor=dict(
        type='PointVoxelDataPreprocessor',
        bgr_to_rgb=True,  # images are read as BGR; each teacher normalises its RGB input
        voxel=True,
        voxel_type='cylindrical',
        voxel_layer=dict(
            grid_shape=grid_shape,
            point_cloud_range=point_cloud_range,
            max_num_points=-1,
            max_voxels=-1)),
    student=dict(
        type='Cylinder3DStudent',
        out_channels=64,
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
            norm_cfg=dict(type='BN1d', eps=1e-5, momentum=0.1))))
