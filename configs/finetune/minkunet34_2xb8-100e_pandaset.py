# Finetuning a pretrained minkunet34 on PandaSet (ScaLR's 17 classes, label 17 ignored; the
# lidar is the one the converted data holds), validated on the val sequences.
_base_ = [
    '../_base_/models/minkunet34_segmentor.py', '../_base_/datasets/pandaset_seg.py',
    '../_base_/schedules/finetune_sgd_100e.py'
]
model = dict(decode_head=dict(num_classes=17, ignore_index=17))
