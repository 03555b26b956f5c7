# Out-of-distribution few-shot: a nuScenes-pretrained minkunet34 finetuned on SemanticKITTI 1%
# (every 100th sorted scan of sequences 00-07, 09, 10), validated on sequence 08.
_base_ = [
    '../_base_/models/minkunet34_segmentor.py', '../_base_/datasets/semantickitti_lidarseg.py',
    '../_base_/schedules/finetune_sgd_100e.py'
]
model = dict(decode_head=dict(num_classes=19, ignore_index=19))
