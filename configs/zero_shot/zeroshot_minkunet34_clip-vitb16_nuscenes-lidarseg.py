# Zero-shot nuScenes lidarseg: every point gets the class whose CLIP text embedding is closest
# to its distilled feature; no 3D label is used. Evaluate with mmdet3d's SegMetric:
#   python tools/create_text_embeddings.py --checkpoint checkpoints/clip-vit-base-patch16 \
#       --classes nuscenes --out checkpoints/text_nuscenes_clip-vitb16.pth
#   python tools/test.py configs/zero_shot/zeroshot_minkunet34_clip-vitb16_nuscenes-lidarseg.py \
#       work_dirs/clipdistill_minkunet34_clip-vitb16_2xb8-50e_nuscenes/epoch_50.pth
_base_ = ['../_base_/datasets/nuscenes_lidarseg.py', '../_base_/default_runtime.py']
model = dict(
    type='ZeroShotSegmentor',
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
    student=dict(
        type='MinkUNetStudent',
        out_channels=512,
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
            sparseconv_backend='spconv')),
    text_embeddings='checkpoints/text_nuscenes_clip-vitb16.pth')
train_dataloader = None
train_cfg = None
optim_wrapper = None
test_cfg = dict(type='TestLoop')
val_cfg = None
val_dataloader = None
val_evaluator = None
