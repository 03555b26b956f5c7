#!/usr/bin/env python
"""Pictures of distillation: superpixels and pairs, student vs teacher features, predictions.

    python tools/visualize.py --data-root data/demo --ann-file data/demo/nuscenes_infos_val.pkl \
        --pretrain-config CONFIG --checkpoint PRETRAIN.pth \
        [--segmentor-config SEG_CONFIG --segmentor-checkpoint SEG.pth] --out-dir vis/ \
        [--index 0] [--camera CAM_FRONT]

Writes, for one sample of any info file in this project's layout:
- ``superpixels_points.png``: the camera image with its SLIC superpixel boundaries and the
  projected lidar points coloured by depth;
- ``features_pca.png``: the student's point features reduced to RGB by PCA and drawn at their
  pixels, next to the 2D head's pixel features reduced by the same PCA (fitted on both, so equal
  colours mean similar features);
- ``bev_labels.png`` (with a segmentor): a bird's-eye view of ground-truth and predicted labels,
  with a legend of the classes shown (name and colour).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(__file__), '..'))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from projects.img2lidar.visualization import (bev_labels_figure, draw_points,  # noqa: E402
                                              draw_superpixels_and_points, pca_rgb)




def sample_and_model(args):
    """One packed sample of the pretraining dataset (deterministic, full image) and the
    distillation model with its checkpoint."""
    from mmdet3d.registry import DATASETS, MODELS
    from mmengine.runner import load_checkpoint
    from projects.img2lidar.engine.launch import load_config
    from projects.img2lidar.preparation.superpixels import slic_superpixels, write_labels
    cfg = load_config(args.pretrain_config)  # as tools/train.py built it
    ds_cfg = cfg.train_dataloader.dataset
    sp_dir = osp.join(args.out_dir, 'superpixels')
    probe = DATASETS.build(dict(type=ds_cfg.type, ann_file=osp.abspath(args.ann_file),
                                data_root=osp.abspath(args.data_root),
                                data_prefix=dict(ds_cfg.data_prefix, sp=osp.abspath(sp_dir)),
                                pipeline=[]))
    info = probe.get_data_info(args.index)
    for img_path, sp_path in zip(info['img_paths'], info['sp_paths']):
        if not osp.isfile(sp_path):  # SLIC on the fly (val images have no precomputed maps)
            write_labels(sp_path, slic_superpixels(cv2.imread(img_path)))
    h, w = cv2.imread(info['img_paths'][0]).shape[:2]
    size = (h - h % 32 if h % 32 else h, w - w % 32 if w % 32 else w)
    pipeline = [
        dict(type='LoadLidarPoints', load_dim=5, use_dim=[0, 1, 2, 3]),
        dict(type='LoadMultiViewImagesAndSuperpixels'),
        dict(type='PointPixelPairing', min_depth=1.0),
        dict(type='PairedRandomResizedCrop', size=size, scale=(1.0, 1.0),
             ratio=(w / h, w / h), min_pairs_per_image=1, min_pairs=1),
        dict(type='PackImageLidarInputs'),
    ]
    ds = DATASETS.build(dict(type=ds_cfg.type, ann_file=osp.abspath(args.ann_file),
                             data_root=osp.abspath(args.data_root),
                             data_prefix=dict(ds_cfg.data_prefix, sp=osp.abspath(sp_dir)),
                             pipeline=pipeline, test_mode=True))
    # no init_weights: the checkpoint holds every weight (the teacher's too), and a config's
    # init_cfg may name files that only exist where it was trained
    model = MODELS.build(cfg.model)
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True)
    return ds[args.index], model.eval()


def features_and_superpixels(args, sample, model):
    from mmengine.dataset import pseudo_collate

    from projects.img2lidar.models import BatchPairs
    sp_maps = sample['inputs']['superpixels'].numpy()  # before the batch takes them
    data = model.data_preprocessor(pseudo_collate([sample]), False)
    with torch.no_grad():
        point_feats = model.extract_point_feat(data['inputs'], data['data_samples'])
        pixel_feats = model.extract_img_feat(data['inputs'])[1].dense()
        pairs = BatchPairs(**data['inputs']['pairs'])
    ds = sample['data_samples']
    cams = ds.metainfo['cam_names']
    c = cams.index(args.camera) if args.camera in cams else 0
    img = sample['inputs']['img'][c].permute(1, 2, 0).numpy().copy()  # BGR
    sp = sp_maps[c]
    rows = (pairs.image == c).numpy()
    pix = pairs.pixel.numpy()[rows]
    pts = sample['inputs']['points'].numpy()[pairs.point.numpy()[rows]]
    # (a) superpixel boundaries and points by depth
    a = draw_superpixels_and_points(img, sp, pix, np.linalg.norm(pts[:, :3], axis=1))
    cv2.imwrite(osp.join(args.out_dir, 'superpixels_points.png'), a)
    # (b) PCA of student point features and teacher-side pixel features, one basis
    pf = point_feats.numpy()[pairs.point.numpy()[rows]]
    pxf = pixel_feats[c].permute(1, 2, 0).numpy()
    hh, ww = pxf.shape[:2]
    fit = np.concatenate([pf, pxf.reshape(-1, pxf.shape[-1])[::7]])
    student = draw_points((img * 0.35).astype(np.uint8), pix, pca_rgb(pf, fit)[:, ::-1], r=2)
    teacher = pca_rgb(pxf.reshape(-1, pxf.shape[-1]), fit).reshape(hh, ww, 3)[:, :, ::-1]
    gap = np.full((hh, 8, 3), 255, np.uint8)
    panel = np.concatenate([student, gap, np.ascontiguousarray(teacher)], 1)
    cv2.putText(panel, 'student (3D points)', (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (255, 255, 255), 1)
    cv2.putText(panel, '2D head (pixels)', (ww + 13, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (255, 255, 255), 1)
    cv2.imwrite(osp.join(args.out_dir, 'features_pca.png'), panel)


def bev_labels(args):
    """Ground truth and predictions of a segmentor, seen from above."""
    from mmdet3d.registry import DATASETS, MODELS
    from mmengine.dataset import pseudo_collate
    from mmengine.runner import load_checkpoint
    from projects.img2lidar.engine.launch import load_config
    cfg = load_config(args.segmentor_config)  # as tools/train.py built it
    ds_cfg = cfg.test_dataloader.dataset
    pipeline = [t for t in ds_cfg.pipeline if t['type'] != 'Pack3DDetInputs'] + [
        dict(type='Pack3DDetInputs', keys=['points', 'pts_semantic_mask'])]
    ds = DATASETS.build(dict(ds_cfg, data_root=osp.abspath(args.data_root),
                             ann_file=osp.abspath(args.ann_file), pipeline=pipeline))
    model = MODELS.build(cfg.model)  # weights from the checkpoint, see sample_and_model
    load_checkpoint(model, args.segmentor_checkpoint, map_location='cpu', strict=True)
    model.eval()
    sample = ds[args.index]
    with torch.no_grad():
        out = model.test_step(pseudo_collate([sample]))[0]
    pts = sample['inputs']['points'].numpy()
    gt = sample['data_samples'].gt_pts_seg.pts_semantic_mask.numpy()
    pred = out.pred_pts_seg.pts_semantic_mask.numpy()
    classes = list(ds.metainfo['classes'])
    valid = gt < len(classes)
    acc = float((pred[valid] == gt[valid]).mean())
    figure = bev_labels_figure(pts[:, :2], [('ground truth', gt), ('prediction', pred)],
                               classes, ds.metainfo['palette'])
    cv2.imwrite(osp.join(args.out_dir, 'bev_labels.png'), figure)
    return acc



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-root', required=True)
    parser.add_argument('--ann-file', required=True)
    parser.add_argument('--pretrain-config', required=True)
    parser.add_argument('--checkpoint', required=True, help='pretraining checkpoint')
    parser.add_argument('--segmentor-config')
    parser.add_argument('--segmentor-checkpoint')
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--index', type=int, default=0)
    parser.add_argument('--camera', default='CAM_FRONT')
    args = parser.parse_args(argv)
    import projects.img2lidar  # noqa: F401
    from mmdet3d.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    os.makedirs(args.out_dir, exist_ok=True)
    sample, model = sample_and_model(args)
    features_and_superpixels(args, sample, model)
    written = ['superpixels_points.png', 'features_pca.png']
    if args.segmentor_config and args.segmentor_checkpoint:
        acc = bev_labels(args)
        written.append(f'bev_labels.png (point accuracy {acc:.3f})')
    print('wrote ' + ', '.join(osp.join(args.out_dir, w) for w in written))
    return 0


if __name__ == '__main__':
    sys.exit(main())
