# The reference pipeline of SLidR and ST-SLidR: the reference student (cylindrical voxels,
# intensity only, BN momentum 0.05), SLidR's teacher and head, SLidR's data pipeline, the 600
# pretraining scenes, 50 epochs of SGD lr 0.5 (momentum 0.9, dampening 0.1, weight decay 1e-4,
# cosine). The leaves set the batch and the loss. Remaining deviations: README, "Fidelity to the
# reference implementations".
_base_ = [
    '../models/minkunet34-cyl_student.py', '../models/resnet50-torchvision-dilated_teacher.py',
    '../datasets/nuscenes_pretrain_slidr.py', '../schedules/pretrain_sgd_50e.py',
    '../default_runtime.py'
]
# the teacher features are pooled as the references' code does: the superpixel map resized to
# the teacher's grid by nearest neighbour (superpixels that no cell reads get no feature)
model = dict(**_base_.teacher_model, teacher_pooling='nearest')
