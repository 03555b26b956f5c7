# Finetuning a backbone pretrained by the reference configs (minkunet34-cyl: SLidR's cylindrical
# voxels, intensity only) on 1% of nuScenes lidarseg; see minkunet34_2xb8-100e_...-1pct.py.
_base_ = [
    '../_base_/models/minkunet34-cyl_segmentor.py', '../_base_/datasets/nuscenes_lidarseg.py',
    '../_base_/schedules/finetune_sgd_100e.py'
]
train_dataloader = dict(dataset=dict(few_shot=1))
