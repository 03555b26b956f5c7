# Zero-shot nuScenes lidarseg: every point gets the class whose CLIP text embedding is closest
# to its distilled feature; no 3D label is used. Evaluate with mmdet3d's SegMetric:
#   python tools/create_text_embeddings.py --checkpoint checkpoints/clip-vit-base-patch16 \
#       --classes nuscenes --out checkpoints/text_nuscenes_clip-vitb16.pth
#   python tools/test.py configs/zero_shot/zeroshot_minkunet34_clip-vitb16_nuscenes-lidarseg.py \
#       work_dirs/clipdistill_minkunet34_clip-vitb16_2xb8-50e_nuscenes/epoch_50.pth
# The student (voxels and backbone) is the pretraining one, read from its base.
_base_ = [
    '../_base_/models/minkunet34_student.py', '../_base_/datasets/nuscenes_lidarseg.py',
    '../_base_/default_runtime.py'
]
model = dict(
    _delete_=True,
    type='ZeroShotSegmentor',
    data_preprocessor=_base_.model.data_preprocessor,
    student=dict(_base_.model.student, out_channels=512),
    text_embeddings='checkpoints/text_nuscenes_clip-vitb16.pth')
train_dataloader = None
train_cfg = None
optim_wrapper = None
test_cfg = dict(type='TestLoop')
val_cfg = None
val_dataloader = None
val_evaluator = None
