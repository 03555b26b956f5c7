# Pretraining a MinkUNet-34 student from a frozen ResNet-50 (MoCo v2) on the 600 nuScenes
# pretraining scenes, 50 epochs, batch 16 = 2 GPUs x 8, SGD lr 0.5, cosine. A method sets only
# its losses on top of this (configs/{slidr,st-slidr,relational,ppkt,similarity}/).
_base_ = [
    '../models/minkunet34_student.py', '../models/resnet50_dilated_teacher.py',
    '../datasets/nuscenes_pretrain.py', '../schedules/pretrain_sgd_50e.py',
    '../default_runtime.py'
]
model = _base_.teacher_model
