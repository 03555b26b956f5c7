# MinkUNet-34 student (SLidR's 3D network: blocks 2,3,4,6; channels 32,64,128,256 /
# 256,128,96,96) on mmdet3d's MinkUNetBackbone with the spconv backend, cartesian voxels.
# The voxelization lives in the model's data preprocessor ('minkunet' voxels, CPU and GPU).
voxel_size = [0.1, 0.1, 0.1]
model = dict(
    type='ImageLidarDistiller',
    data_preprocessor=dict(
        type='PointVoxelDataPreprocessor',
        bgr_to_rgb=True,  # images are read as BGR; each teacher normalises its RGB input
        voxel=True,
        voxel_type='minkunet',
        batch_first=True,
        max_voxels=None,
        voxel_layer=dict(
            max_num_points=-1,
            point_cloud_range=[-100, -100, -20, 100, 100, 20],
            voxel_size=voxel_size,
            max_voxels=(-1, -1))),
    student=dict(
        type='MinkUNetStudent',
        out_channels=64,
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
            sparseconv_backend='spconv')))
