# Zero-shot nuScenes lidarseg: tools/test.py of a CLIP-distilled checkpoint
# (configs/zero_shot/clipdistill_*) with the ZeroShotSegmentor config; every point gets the class
# whose text embedding is closest to its feature. Nothing is trained, so it runs once.
# The text embeddings (tools/create_text_embeddings.py) must exist; another file than the
# config's: --cfg-options model.text_embeddings=PATH
description = ('Zero-shot nuScenes lidarseg: CLIP-distilled MinkUNet-34 point features '
               'labelled by the nearest class text embedding (no 3D label used)')
seeds = 1
runs = [
    dict(name='zero-shot',
         config='configs/zero_shot/zeroshot_minkunet34_clip-vitb16_nuscenes-lidarseg.py',
         mode='test',
         required_files=['model.text_embeddings'],
         pinned=dict(split='the 150 nuScenes lidarseg val scenes')),
]
