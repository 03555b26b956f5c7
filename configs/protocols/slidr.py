# SLidR's downstream protocol (Sautier et al., CVPR 2022; ST-SLidR and later papers report the
# same three numbers): a linear probe on 100% of nuScenes, finetuning on nuScenes 1% and on
# SemanticKITTI 1%, each mmdet3d's MinkUNet-34 segmentor with the pretrained backbone. Three
# seeds by default (the papers' three-run mean). Evaluate with
#   python tools/evaluate_pretraining.py CHECKPOINT --protocol slidr [--launcher pytorch --gpus 2]
# The batch is the total over processes: one process gets 16, two get 8 each.
# These configs take a MinkUNet-34 student with cartesian voxels (configs/*/..._minkunet34_...).
# A student pretrained on other voxels (minkunet34-cyl, cylinder3d) needs a copy of this file
# naming the matching configs/finetune and configs/linear_probe configs.
description = ("SLidR's downstream evaluation: linear probe on nuScenes 100%, finetuning on "
               'nuScenes 1% and SemanticKITTI 1% (MinkUNet-34, cartesian voxels)')
seeds = 3
checkpoint_option = 'model.init_cfg.checkpoint'  # PretrainedStudent: strict load of backbone.*
random_init_options = ['model.init_cfg=None']
runs = [
    dict(name='linear-probe',
         config='configs/linear_probe/minkunet34_linear-probe_2xb8-100e_nuscenes-lidarseg.py',
         mode='train',
         pinned=dict(head_lr=0.05, epochs=100, batch=16, split=dict(
             definition='all 700 nuScenes lidarseg train scenes; val: the 150 val scenes',
             config={'train_dataloader.dataset.few_shot': 100}))),
    dict(name='nuscenes-1pct',
         config='configs/finetune/minkunet34_2xb8-100e_nuscenes-lidarseg-1pct.py',
         mode='train',
         pinned=dict(lr=0.02, head_lr=2.0, epochs=100, batch=16, split=dict(
             definition="SLidR's 1%: every 100th train scene in scene-table order; val: the "
             '150 val scenes',
             config={'train_dataloader.dataset.few_shot': 1}))),
    dict(name='semantickitti-1pct',
         config='configs/finetune/minkunet34_2xb8-100e_semantickitti-1pct.py',
         mode='train',
         pinned=dict(lr=0.02, head_lr=2.0, epochs=100, batch=16, split=dict(
             definition='every 100th sorted scan of sequences 00-07, 09, 10; val: sequence 08',
             config={'train_dataloader.dataset.every_nth': 100}))),
]
