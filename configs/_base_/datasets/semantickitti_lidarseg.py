# SemanticKITTI (19 classes, label 19 ignored) on mmdet3d's info files, with the pipelines of
# the nuScenes base (4 floats per point, SemanticKITTI's label files). Class names, palette and
# learning map are SemanticKittiFewShotDataset.METAINFO's. The train set keeps every
# `every_nth` sorted scan of sequences 00-07, 09, 10 (100 = the 1% split); val is 08.
_base_ = ['./nuscenes_lidarseg.py']
dataset_type = 'SemanticKittiFewShotDataset'
data_root = 'data/semantickitti/'
load = [
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=4, use_dim=4),
    dict(type='LoadAnnotations3D', with_bbox_3d=False, with_label_3d=False, with_seg_3d=True,
         seg_3d_dtype='np.int32', seg_offset=2**16, dataset_type='semantickitti'),
]
train_pipeline = load + _base_.train_pipeline[2:]
test_pipeline = load + _base_.test_pipeline[2:]
tta_pipeline = test_pipeline[:-1] + [_base_.tta_views]  # tools/test.py --tta
train_dataloader = dict(
    dataset=dict(_delete_=True, type=dataset_type, data_root=data_root,
                 ann_file='semantickitti_infos_train.pkl', pipeline=train_pipeline,
                 ignore_index=19, every_nth=100))
val_dataloader = dict(
    dataset=dict(_delete_=True, type=dataset_type, data_root=data_root,
                 ann_file='semantickitti_infos_val.pkl', pipeline=test_pipeline,
                 ignore_index=19, test_mode=True))
test_dataloader = val_dataloader
