# nuScenes lidarseg (16 classes, label 16 ignored) for finetuning and linear probing, on the
# info files of tools/create_pretrain_infos.py; `few_shot` picks SLidR's 1/5/10/25/100% subsets.
dataset_type = 'NuScenesLidarSegDataset'
data_root = 'data/nuscenes/'
data_prefix = dict(pts='samples/LIDAR_TOP', pts_semantic_mask='')
load = [
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=5, use_dim=4),
    dict(type='LoadAnnotations3D', with_bbox_3d=False, with_label_3d=False, with_seg_3d=True,
         seg_3d_dtype='np.uint8'),
]
train_pipeline = load + [
    dict(type='PointSegClassMapping'),
    dict(type='GlobalRotScaleTrans', rot_range=[-3.1415926, 3.1415926],
         scale_ratio_range=[0.95, 1.05], translation_std=[0, 0, 0]),
    dict(type='RandomFlip3D', sync_2d=False, flip_ratio_bev_horizontal=0.5,
         flip_ratio_bev_vertical=0.5),
    dict(type='Pack3DDetInputs', keys=['points', 'pts_semantic_mask']),
]
test_pipeline = load + [
    dict(type='PointSegClassMapping'),
    dict(type='Pack3DDetInputs', keys=['points']),
]
# Test-time augmentation (tools/test.py --tta), as in mmdet3d's segmentation bases: the test
# loading steps, then 36 views (4 flips x 3 rotations x 3 scales) whose softmax scores
# Seg3DTTAModel averages. The first view is the identity (BEVSegVisualizationHook draws its
# points). Bases with other loading steps build their own tta_pipeline from tta_views.
tta_views = dict(
    type='TestTimeAug',
    transforms=[
        [dict(type='RandomFlip3D', sync_2d=False, flip_ratio_bev_horizontal=horizontal,
              flip_ratio_bev_vertical=vertical)
         for horizontal in (0., 1.) for vertical in (0., 1.)],
        [dict(type='GlobalRotScaleTrans', rot_range=[angle, angle],
              scale_ratio_range=[scale, scale], translation_std=[0, 0, 0])
         for angle in (0., -0.78539816, 0.78539816) for scale in (1., 0.95, 1.05)],
        [dict(type='Pack3DDetInputs', keys=['points'])],
    ])
tta_pipeline = test_pipeline[:-1] + [tta_views]
tta_model = dict(type='Seg3DTTAModel')
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='nuscenes_infos_train.pkl',
                 data_prefix=data_prefix, pipeline=train_pipeline, few_shot=None))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='nuscenes_infos_val.pkl',
                 data_prefix=data_prefix, pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='SegMetric')
test_evaluator = val_evaluator
