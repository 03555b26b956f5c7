# SemanticKITTI (19 classes, label 19 ignored) on mmdet3d's info files; the train set keeps
# every `every_nth` sorted scan of sequences 00-07, 09, 10 (100 = the 1% split); val is 08.
dataset_type = 'SemanticKittiFewShotDataset'
data_root = 'data/semantickitti/'
class_names = ('car', 'bicycle', 'motorcycle', 'truck', 'bus', 'person', 'bicyclist',
               'motorcyclist', 'road', 'parking', 'sidewalk', 'other-ground', 'building', 'fence',
               'vegetation', 'trunck', 'terrian', 'pole', 'traffic-sign')
# SemanticKITTI's learning map (semantic-kitti.yaml)
labels_map = {0: 19, 1: 19, 10: 0, 11: 1, 13: 4, 15: 2, 16: 4, 18: 3, 20: 4, 30: 5, 31: 6, 32: 7,
              40: 8, 44: 9, 48: 10, 49: 11, 50: 12, 51: 13, 52: 19, 60: 8, 70: 14, 71: 15, 72: 16,
              80: 17, 81: 18, 99: 19, 252: 0, 253: 6, 254: 5, 255: 7, 256: 4, 257: 4, 258: 3,
              259: 4}
metainfo = dict(classes=class_names, seg_label_mapping=labels_map, max_label=259)
train_pipeline = [
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=4, use_dim=4),
    dict(type='LoadAnnotations3D', with_bbox_3d=False, with_label_3d=False, with_seg_3d=True,
         seg_3d_dtype='np.int32', seg_offset=2**16, dataset_type='semantickitti'),
    dict(type='PointSegClassMapping'),
    dict(type='GlobalRotScaleTrans', rot_range=[-3.1415926, 3.1415926],
         scale_ratio_range=[0.95, 1.05], translation_std=[0, 0, 0]),
    dict(type='RandomFlip3D', sync_2d=False, flip_ratio_bev_horizontal=0.5,
         flip_ratio_bev_vertical=0.5),
    dict(type='Pack3DDetInputs', keys=['points', 'pts_semantic_mask']),
]
test_pipeline = [
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=4, use_dim=4),
    dict(type='LoadAnnotations3D', with_bbox_3d=False, with_label_3d=False, with_seg_3d=True,
         seg_3d_dtype='np.int32', seg_offset=2**16, dataset_type='semantickitti'),
    dict(type='PointSegClassMapping'),
    dict(type='Pack3DDetInputs', keys=['points']),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='semantickitti_infos_train.pkl',
                 pipeline=train_pipeline, metainfo=metainfo, ignore_index=19, every_nth=100))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='semantickitti_infos_val.pkl',
                 pipeline=test_pipeline, metainfo=metainfo, ignore_index=19, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='SegMetric')
test_evaluator = val_evaluator
