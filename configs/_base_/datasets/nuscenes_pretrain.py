# nuScenes image-to-lidar pretraining data: the 600 pretraining scenes (infos from
# tools/create_pretrain_infos.py) with SLIC superpixels (tools/create_superpixels.py).
dataset_type = 'ImageLidarPretrainDataset'
data_root = 'data/nuscenes/'
cameras = ['CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT',
           'CAM_BACK_RIGHT']
data_prefix = dict(pts='samples/LIDAR_TOP', sp='superpixels',
                   **{cam: f'samples/{cam}' for cam in cameras})
# JPEGs decoded at half resolution (the 224x416 crops shrink them by >= 2.1); crop boxes on
# multiples of 2 full-resolution pixels, so that each is whole decoded pixels and is cut and
# resized, not warped (PairedRandomResizedCrop's align)
decode_scale = 2
load = [
    dict(type='LoadLidarPoints', load_dim=5, use_dim=[0, 1, 2, 3]),
    dict(type='LoadMultiViewImagesAndSuperpixels', decode_scale=decode_scale),
    dict(type='PointPixelPairing', min_depth=1.0),
]
train_pipeline = load + [
    dict(type='PairedRandomResizedCrop', size=(224, 416), scale=(0.3, 1.0),
         ratio=(14 / 9, 17 / 9), max_tries=10, min_pairs_per_image=512, min_pairs=1024,
         align=decode_scale),
    dict(type='PairedRandomFlip', prob=0.5),
    dict(type='PairedCloudAugmentation', rotation=True, flip_x_prob=0.5, flip_y_prob=0.5),
    dict(type='PackImageLidarInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    # the batch is made in the loader's workers: stacked images, batch-wide int32 pair indices,
    # int16 superpixel maps (projects/img2lidar/datasets/collate_image_lidar.py)
    collate_fn=dict(type='collate_image_lidar'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='nuscenes_infos_pretrain.pkl',
        data_prefix=data_prefix,
        cameras=cameras,
        skip_bad_samples=True,
        pipeline=train_pipeline))
# pretraining validation (the 100 held-out scenes): the structural gap, no labels needed
val_pipeline = load + [
    # the whole image (scale 1, the nuScenes aspect ratio), resized: deterministic
    dict(type='PairedRandomResizedCrop', size=(224, 416), scale=(1.0, 1.0),
         ratio=(16 / 9, 16 / 9), min_pairs_per_image=1, min_pairs=1, align=decode_scale),
    dict(type='PackImageLidarInputs'),
]
val_dataloader = dict(
    train_dataloader,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(train_dataloader['dataset'], ann_file='nuscenes_infos_pretrain_val.pkl',
                 skip_bad_samples=False, test_mode=True, pipeline=val_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='StructuralGapMetric')
test_evaluator = val_evaluator
