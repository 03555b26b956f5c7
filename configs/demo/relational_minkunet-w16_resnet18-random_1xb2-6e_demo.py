# DEMO pretraining (relational loss) on the built-in demo world (tools/create_demo_world.py): the
# nuScenes ST-SLidR config with a small MinkUNet student (width 16, one block per stage), a
# small ResNet-18 teacher that is FROZEN AND RANDOMLY INITIALISED (no weights are downloaded;
# random conv features still separate the world's colours and textures), 112x208 crops,
# batch 2, 6 epochs. Only the sizes differ from the paper config.
_base_ = ['../relational/relational_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py']
data_root = 'data/demo/'
model = dict(
    student=dict(backbone=dict(base_channels=16, encoder_channels=[16, 32, 64, 128],
                               encoder_blocks=[1, 1, 1, 1], decoder_channels=[128, 64, 48, 48],
                               decoder_blocks=[1, 1, 1, 1])),
    teacher=dict(checkpoint=None, backbone=dict(depth=18, base_channels=16, stem_channels=16)),
    image_head=dict(in_channels=128),
    # relational terms weighted 0.1 on the demo: with weights 1 the structure of the random
    # teacher's nearly uniform features (all cosines high) pulls the student into collapse
    # before InfoNCE separates it (measured: probe mIoU 9.7 at 1/1, 29.5 at 0.1/0.1)
    losses=dict(loss_rel=dict(lambda_cross=0.1, lambda_intra=0.1)))
train_pipeline = [
    dict(type='LoadLidarPoints', load_dim=5, use_dim=[0, 1, 2, 3]),
    dict(type='LoadMultiViewImagesAndSuperpixels'),
    dict(type='PointPixelPairing', min_depth=1.0),
    dict(type='PairedRandomResizedCrop', size=(112, 208), min_pairs_per_image=64, min_pairs=256),
    dict(type='PairedRandomFlip', prob=0.5),
    dict(type='PairedCloudAugmentation'),
    dict(type='PackImageLidarInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=1,
    dataset=dict(data_root=data_root, ann_file='nuscenes_infos_pretrain.pkl',
                 pipeline=train_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None
optim_wrapper = dict(optimizer=dict(lr=0.05))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=6, by_epoch=True, eta_min=0)]
train_cfg = dict(max_epochs=6, val_interval=100)
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=6))
log_processor = dict(window_size=5)
randomness = dict(seed=0)
