# SemanticKITTI 1% from a reference-pretrained (cylindrical voxels, intensity only) backbone.
_base_ = [
    '../_base_/models/minkunet34-cyl_segmentor.py',
    '../_base_/datasets/semantickitti_lidarseg.py', '../_base_/schedules/finetune_sgd_100e.py'
]
model = dict(decode_head=dict(num_classes=19, ignore_index=19))
