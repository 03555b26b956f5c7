#!/usr/bin/env python
"""Write the built-in demo world, a procedural driving scene, as a nuScenes v1.0-mini dataset.

    python tools/create_demo_world.py --out data/demo [--samples 4] [--seed 0]

Scenes carry the names of nuScenes' mini splits, so the devkit's split lists apply: the
mini_train scenes serve pretraining (one of them also few-shot finetuning) and the mini_val
scenes validation. Images are 400x225 with the nuScenes rig's intrinsics scaled down.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(__file__), '..'))

MINI_TRAIN = ['scene-0061', 'scene-0553', 'scene-0655', 'scene-0757', 'scene-0796',
              'scene-1077', 'scene-1094', 'scene-1100']
MINI_VAL = ['scene-0103', 'scene-0916']


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True)
    parser.add_argument('--train-scenes', type=int, default=6)
    parser.add_argument('--val-scenes', type=int, default=2)
    parser.add_argument('--samples', type=int, default=4, help='keyframes per scene')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    from projects.img2lidar.demo import write_world
    scenes = MINI_TRAIN[:args.train_scenes] + MINI_VAL[:args.val_scenes]
    write_world(args.out, scenes, samples_per_scene=args.samples, seed=args.seed)
    print(f'wrote {len(scenes)} scenes x {args.samples} samples to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
