# PandaSet lidar segmentation (ScaLR's 17 classes, label 17 ignored; the table is
# PandaSetSegDataset.METAINFO's) for finetuning and linear probing, with the pipelines of the
# nuScenes base, on the files of tools/create_pandaset_infos.py (pandaset_layout.py). The
# lidar (Pandar64, PandarGT or both) is the one the out dir was converted for. z is shifted into
# nuScenes' height frame as in PandaSet pretraining (pandaset_layout.py), so that a finetuned
# student sees the frame it was pretrained in.
_base_ = ['./nuscenes_lidarseg.py', './pandaset_layout.py']
dataset_type = 'PandaSetSegDataset'
data_root = _base_.pandaset_root
data_prefix = _base_.pandaset_prefix
load = [
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=_base_.pandaset_load_dim,
         use_dim=_base_.pandaset_use_dim),
    dict(type='ShiftHeight', z_offset=_base_.pandaset_z_offset), _base_.load[1]
]
train_pipeline = load + _base_.train_pipeline[len(_base_.load):]
test_pipeline = load + _base_.test_pipeline[len(_base_.load):]
tta_pipeline = test_pipeline[:-1] + [_base_.tta_views]  # tools/test.py --tta
train_dataloader = dict(
    dataset=dict(_delete_=True, type=dataset_type, data_root=data_root,
                 ann_file=_base_.pandaset_train_infos, data_prefix=data_prefix,
                 pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(_delete_=True, type=dataset_type, data_root=data_root,
                 ann_file=_base_.pandaset_val_infos, data_prefix=data_prefix,
                 pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
