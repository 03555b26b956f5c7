# Finetuning a pretrained cylinder3d on 1% of nuScenes lidarseg train (SLidR's few-shot subset:
# every 100th train scene in scene-table order), evaluated with mmdet3d's SegMetric on the 150 val
# scenes. The pretraining checkpoint: --cfg-options model.init_cfg.checkpoint=PATH
# (model.init_cfg=None: random initialisation).
_base_ = [
    '../_base_/models/cylinder3d_segmentor.py', '../_base_/datasets/nuscenes_lidarseg.py',
    '../_base_/schedules/finetune_sgd_100e.py'
]
train_dataloader = dict(dataset=dict(few_shot=1))
