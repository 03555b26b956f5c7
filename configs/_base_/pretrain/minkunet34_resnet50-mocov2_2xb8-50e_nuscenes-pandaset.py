# Pretraining a MinkUNet-34 student from a frozen ResNet-50 (MoCo v2) on the nuScenes
# pretraining scenes and the PandaSet train sequences together (one ConcatDataset, see
# ../datasets/nuscenes-pandaset_pretrain.py), 50 epochs, batch 16 = 2 GPUs x 8, SGD lr 0.5,
# cosine. A method sets only its losses on top of this.
_base_ = [
    '../models/minkunet34_student.py', '../models/resnet50_dilated_teacher.py',
    '../datasets/nuscenes-pandaset_pretrain.py', '../schedules/pretrain_sgd_50e.py',
    '../default_runtime.py'
]
model = _base_.teacher_model
