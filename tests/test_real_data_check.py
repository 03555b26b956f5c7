"""The real-data check's protocol (tools/real_data_check.py), without pretraining: which frames
each variant's pretraining reads, that every row of a table is probed on the same points, and
the paired differences of its report on hand-made numbers."""
import pickle
import shutil

import numpy as np
import pytest
import torch
from mmengine.config import Config

import synthetic_pandaset as synth
from conftest import REPO_ROOT
from projects.img2lidar.evaluation import real_data_check as check
from projects.img2lidar.evaluation.probe_points import POINT_SETS
from projects.img2lidar.evaluation.real_data_report import format_table, differences_json

SLIDR_CONFIG = REPO_ROOT / check.CONFIG.format('slidr')
#: the synthetic root's frames, copied into three sequences as the sample's 001, 002 and 003
TRAIN_TOKENS = ['001_00', '001_02', '002_00', '002_02']
ALL_TOKENS = TRAIN_TOKENS + ['003_00', '003_02']


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    """The synthetic PandaSet root as three sequences, converted as the check converts."""
    tmp = tmp_path_factory.mktemp('real_data_split')
    root = tmp / 'root'
    synth.write_synthetic_pandaset(root)
    for name in ('002', '003'):
        shutil.copytree(root / synth.SEQUENCE, root / name, symlinks=True)
    out = tmp / 'converted'
    check.convert_frames(str(root), str(out))
    return out


def _tokens(info_file) -> list:
    with open(info_file, 'rb') as f:
        return [info['token'] for info in pickle.load(f)['data_list']]


def _effective_ann_file(cmd) -> str:
    """The info file a tools/train.py command reads: its config with its --cfg-options."""
    assert cmd[2] == str(SLIDR_CONFIG)
    options = cmd[cmd.index('--cfg-options') + 1:]
    cfg = Config.fromfile(cmd[2])
    cfg.merge_from_dict(dict(o.split('=', 1) for o in options))
    return cfg.train_dataloader.dataset.ann_file


def test_held_out_pretraining_never_reads_the_test_sequence(converted, tmp_path):
    """By default the pretraining reads 001 and 002 only (exact frames), the config alone too;
    the transductive variant reads all six frames, 003 included."""
    held_out, transductive = check.VARIANTS['held-out'], check.VARIANTS['transductive']
    assert check.pretraining_frames(str(converted), held_out) == TRAIN_TOKENS
    assert check.pretraining_frames(str(converted), transductive) == ALL_TOKENS
    # the config run as it is (tools/train.py without the check) pretrains held out
    default = Config.fromfile(str(SLIDR_CONFIG)).train_dataloader.dataset.ann_file
    assert _tokens(converted / default) == TRAIN_TOKENS
    for variant, tokens in ((held_out, TRAIN_TOKENS), (transductive, ALL_TOKENS)):
        cmd = check.pretrain_command(str(SLIDR_CONFIG), 1, str(tmp_path / 'run'),
                                     str(converted), variant, 'teacher.pth', str(REPO_ROOT))
        assert _tokens(converted / _effective_ann_file(cmd)) == tokens
        assert 'randomness.seed=1' in cmd
    # their runs are kept apart, and a smoke run's apart from both
    dirs = {check.pretrain_run_dir('w', 'slidr', 0, v, smoke)
            for v in (held_out, transductive) for smoke in (False, True)}
    assert len(dirs) == 4
    # a held-out variant whose info file held a frame of 003 is an error naming the file
    leaky = check.Variant('held-out', 'all', 'results')
    with pytest.raises(ValueError, match=r'pandaset_infos_all\.pkl.*003_00'):
        check.pretraining_frames(str(converted), leaky)


def test_a_reused_run_must_be_of_the_same_variant(tmp_path):
    config = str(SLIDR_CONFIG)
    run_dir = tmp_path / 'seed0'
    run_dir.mkdir()
    with pytest.raises(ValueError, match='not its config'):
        check.check_reused_run(str(run_dir), config, check.VARIANTS['held-out'])
    (run_dir / SLIDR_CONFIG.name).write_text(
        "train_dataloader = dict(dataset=dict(ann_file='pandaset_infos_all.pkl'))\n")
    with pytest.raises(ValueError, match=r'pretrained on pandaset_infos_all\.pkl'):
        check.check_reused_run(str(run_dir), config, check.VARIANTS['held-out'])
    check.check_reused_run(str(run_dir), config, check.VARIANTS['transductive'])


def test_ablation_rows_and_region_sources_are_the_slidr_config_with_one_change(tmp_path):
    """--methods st / cb / st_cb_nearest pretrain the SLidR config with the ablation's losses
    and nothing else changed; --regions pretrain it reading another folder of maps, checked
    against their sidecar; a configured method with SLIC runs its own file."""
    held_out = check.VARIANTS['held-out']
    slidr = Config.fromfile(str(SLIDR_CONFIG))
    assert check.method_config('stslidr', str(tmp_path), str(REPO_ROOT), held_out) == str(
        REPO_ROOT / check.CONFIG.format('stslidr'))
    st = Config.fromfile(check.method_config('st', str(tmp_path), str(REPO_ROOT), held_out))
    assert list(st.model.losses) == ['loss_st']
    assert st.model.losses.loss_st.tolerance == 'quantile'
    assert st.model.losses.loss_st.get('balancing') is None
    assert st.train_dataloader == slidr.train_dataloader and st.model.teacher == slidr.model.teacher
    nearest = Config.fromfile(check.method_config('st_cb_nearest', str(tmp_path), str(REPO_ROOT),
                                                  held_out))
    assert nearest.model.teacher_pooling == 'nearest'
    assert nearest.model.losses.loss_st.balancing.threshold == 0.5
    for variant, folder in ((held_out, 'superpixels_teacher_codebook_train'),
                            (check.VARIANTS['transductive'], 'superpixels_teacher_codebook_all')):
        path = check.method_config('slidr', str(tmp_path), str(REPO_ROOT), variant,
                                   'teacher_codebook')
        cfg = Config.fromfile(path)
        dataset = cfg.train_dataloader.dataset
        assert dataset.data_prefix.sp == folder
        assert dict(dataset.superpixel_source) == dict(generator='teacher_kmeans',
                                                       mode='codebook')
        assert {k: v for k, v in dataset.data_prefix.items() if k != 'sp'} == {
            k: v for k, v in slidr.train_dataloader.dataset.data_prefix.items() if k != 'sp'}
        assert cfg.model == slidr.model
    assert check.row_label('slidr') == 'SLidR'
    assert check.row_label('slidr', 'teacher_kmeans') == 'SLidR, teacher k-means per image'
    assert check.row_label('st_cb_nearest') == 'ST + CB (nearest)'
    # run folders: one per method and source
    dirs = {check.pretrain_run_dir('w', m, 0, held_out, regions=r)
            for m in ('slidr', 'st') for r in ('slic', 'teacher_kmeans')}
    assert len(dirs) == 4


def test_a_reused_run_must_have_the_row_s_losses_and_maps(tmp_path):
    held_out = check.VARIANTS['held-out']
    config = check.method_config('st', str(tmp_path / 'w'), str(REPO_ROOT), held_out)
    run_dir = tmp_path / 'seed0'
    run_dir.mkdir()
    cfg = Config.fromfile(config)
    cfg.dump(str(run_dir / 'st.py'))
    check.check_reused_run(str(run_dir), config, held_out)  # the same row: reused
    Config.fromfile(str(SLIDR_CONFIG)).dump(str(run_dir / 'st.py'))  # SLidR's losses
    with pytest.raises(ValueError, match='pretrained with losses'):
        check.check_reused_run(str(run_dir), config, held_out)
    cfg.train_dataloader.dataset.data_prefix.sp = 'superpixels_teacher_kmeans'
    cfg.dump(str(run_dir / 'st.py'))
    with pytest.raises(ValueError, match='pretrained with superpixels superpixels_teacher'):
        check.check_reused_run(str(run_dir), config, held_out)


def test_a_fitted_region_source_is_made_from_the_pretraining_frames_only(monkeypatch,
                                                                         tmp_path):
    """The teacher codebook of the held-out variant is fitted on (and made for) the frames of
    sequences 001-002 only; per-image sources read all frames (no label, no fit)."""
    import projects.img2lidar.preparation.superpixels as superpixels
    calls = []
    monkeypatch.setattr(superpixels, 'create_superpixels',
                        lambda info, root, out, **kw: calls.append((info, out, kw)))
    root = str(tmp_path / 'pandaset')
    for name in ('teacher_codebook', 'teacher_kmeans', 'slic'):
        check.make_regions(name, root, str(tmp_path), check.VARIANTS['held-out'])
    (codebook, _, kw), (per_image, _, kw_image), (slic, slic_out, kw_slic) = calls
    assert codebook.endswith('pandaset_infos_train.pkl') and kw['mode'] == 'codebook'
    assert kw['codebook'].startswith(root) and kw['checkpoint'] == check.teacher_checkpoint(
        str(tmp_path))
    assert per_image.endswith('pandaset_infos_all.pkl') and kw_image['mode'] == 'per_image'
    assert slic.endswith('pandaset_infos_all.pkl') and slic_out.endswith('/superpixels')
    assert kw_slic == dict(img_prefix='camera/{cam}', workers=1, generator='slic', downscale=2)


NUM_CLASSES = 3


def _frame(token: str, labels, in_camera) -> check.Frame:
    labels, in_camera = np.asarray(labels), np.asarray(in_camera, dtype=bool)
    return check.Frame(token, token[:3], torch.zeros(len(labels), 4), labels, in_camera,
                       np.zeros((int(in_camera.sum()), 2), np.int64), '', (1, 1))


def _features(frame, points) -> torch.Tensor:
    """Features that name their point (column 0) and let a probe learn the label."""
    onehot = np.eye(NUM_CLASSES + 1)[np.minimum(frame.labels[points], NUM_CLASSES)]
    return torch.from_numpy(np.c_[points, onehot]).float()


class Recorder:
    """A row's source that records which point each feature it hands out belongs to."""

    def __init__(self, source) -> None:
        self.source, self.point_sets, self.seen = source, source.point_sets, []

    def __call__(self, frame):
        feats, seen = self.source(frame), self.seen

        class Recorded:
            def at(self, points):
                out = feats.at(points)
                seen.append((frame.token, out[:, 0].long().numpy()))
                return out

        return Recorded()


def test_every_row_is_probed_on_the_same_points(monkeypatch):
    """Students and the teacher at the pixels train and are scored on one selection of points
    per point set; the teacher on the in-camera points only, through its pixel rows."""
    # 10 points per frame: in the camera 0-4 (training frames) or 2, 3, 7 (test frame);
    # label 3 (= NUM_CLASSES) is unlabelled
    train = [_frame('001_00', [0, 1, 2, 3, 0, 1, 2, 0, 1, 2], [1] * 5 + [0] * 5),
             _frame('002_00', [3, 3, 0, 1, 2, 0, 1, 2, 0, 1], [1] * 5 + [0] * 5)]
    test = [_frame('003_00', [0, 1, 2, 0, 1, 2, 0, 1, 2, 3], np.isin(np.arange(10), [2, 3, 7]))]
    monkeypatch.setattr(check, 'student_features', lambda model, f: _features(
        f, np.arange(len(f.labels))))
    # the teacher's features: the in-camera points, in point order (as its pixels are)
    monkeypatch.setattr(check, 'teacher_features', lambda model, f: _features(
        f, np.flatnonzero(f.in_camera)))
    sources = {check.RANDOM_ROW: Recorder(check.StudentSource(None)),
               'SLidR': Recorder(check.StudentSource(None)),
               check.TEACHER_ROW: Recorder(check.TeacherSource(None))}
    sizes = check.ProbeSizes(points_per_frame=3, steps=300)
    scores, points = check.score_seed(sources, train, test, NUM_CLASSES, 7, sizes)

    # the selection, by hand: 3 labelled points of each training frame's set, every point of
    # the test frame's set
    cam, every = points['in_camera'], points['all_points']
    assert [len(k) for k in cam.train] == [3, 3] and [len(k) for k in every.train] == [3, 3]
    assert set(cam.train[0]) <= {0, 1, 2, 4} and set(cam.train[1]) <= {2, 3, 4}
    assert not set(every.train[0]) & {3} and not set(every.train[1]) & {0, 1}
    np.testing.assert_array_equal(cam.test[0], [2, 3, 7])
    np.testing.assert_array_equal(every.test[0], np.arange(10))
    # every row read exactly these points, in order: training frames, then the test frame
    for name, source in sources.items():
        sets = source.point_sets
        expected = [(f.token, getattr(points[p], part)[i]) for part, frames in (
            ('train', train), ('test', test)) for i, f in enumerate(frames) for p in sets]
        assert [t for t, _ in source.seen] == [t for t, _ in expected], name
        for (_, got), (_, want) in zip(source.seen, expected):
            np.testing.assert_array_equal(got, want, err_msg=name)
    assert set(scores[check.TEACHER_ROW]) == {'in_camera'}
    assert set(scores['SLidR']) == set(POINT_SETS)
    # the features name the label, and every class is among the in-camera training points of
    # 002_00 (2, 3, 4): every row's probe is right on every labelled test point in the camera
    for row in scores.values():
        assert row['in_camera']['miou'] == pytest.approx(100.0)
        assert row['in_camera']['classes_present'] == 3  # labels 2, 0, 1
    again, _ = check.score_seed(sources, train, test, NUM_CLASSES, 7, sizes)
    assert again == scores  # seeded


def _scores(**rows):
    """Per row, one {point set: {'miou': value}} per seed, from per-point-set lists."""
    return {name: [{p: dict(miou=v) for p, v in zip(by_set, values)}
                   for values in zip(*by_set.values())] for name, by_set in rows.items()}


def test_paired_differences_from_slidr_on_hand_numbers():
    """mean ± std and the paired difference from SLidR with its 95% Student-t interval:
    t(0.975, 2) = 4.302653, half-width 4.302653 * std / sqrt(3) = 2.4841 for std 1."""
    scores = _scores(**{
        check.RANDOM_ROW: dict(in_camera=[10, 12, 14], all_points=[9, 9, 9]),
        'SLidR': dict(in_camera=[20, 22, 24], all_points=[15, 16, 17]),
        'ST-SLidR (ST + CB)': dict(in_camera=[21, 24, 24], all_points=[14, 16, 18]),
        check.TEACHER_ROW: dict(in_camera=[30, 30, 33]),
    })
    data = dict(variant='held-out', seeds=3, scores=scores,
                probe=dict(points_per_frame=25_000, steps=300),
                point_counts=dict(in_camera=dict(train=1000, test=500, classes_present=8),
                                  all_points=dict(train=2000, test=900, classes_present=11)))
    table = format_table(data)
    main, detail = table.split('Paired differences from SLidR')
    rows = {line.split(' | ')[0][2:]: line for line in main.splitlines()
            if line.startswith('| ')}
    assert rows['SLidR'] == '| SLidR | 22.0 ± 2.0 | (reference) | 16.0 ± 1.0 | (reference) |'
    # differences [1, 2, 0] (mean 1, std 1) and [-1, 0, 1] (mean 0, std 1)
    assert rows['ST-SLidR (ST + CB)'] == ('| ST-SLidR (ST + CB) | 23.0 ± 1.7 | +1.0 [-1.5, +3.5] '
                                          '| 16.0 ± 2.0 | +0.0 [-2.5, +2.5] |')
    assert rows[check.RANDOM_ROW] == (f'| {check.RANDOM_ROW} | 12.0 ± 2.0 | -10.0 [-10.0, -10.0] '
                                      '| 9.0 ± 0.0 | -7.0 [-9.5, -4.5] |')
    assert rows[check.TEACHER_ROW] == (f'| {check.TEACHER_ROW} | 31.0 ± 1.7 | +9.0 [+6.5, +11.5] '
                                       '| - | - |')
    assert table.startswith('Held out: ')
    assert 'Smoke run' not in table
    diffs = differences_json(scores)
    st = diffs['ST-SLidR (ST + CB)']['in_camera']
    assert st['seeds'] == [0, 1, 2] and st['unpaired'] == 0
    assert st['differences']['values'] == [1.0, 2.0, 0.0]
    np.testing.assert_allclose(st['differences']['ci'], [1 - 2.4841, 1 + 2.4841], atol=1e-4)
    assert 'all_points' not in diffs[check.TEACHER_ROW]
    # the detail table: one line per (row, point set) with its spread and number of pairs
    assert '| ST-SLidR (ST + CB) | in_camera | +1.00 | 1.00 | [-1.48, +3.48] | 3 | - | 0 |' \
        in detail
    # the transductive variant and a smoke run say so first
    smoke = format_table(dict(data, variant='transductive', smoke=True))
    assert smoke.startswith('**Smoke run (IMG2LIDAR_TINY=1)')
    assert '\nTransductive: ' in smoke


def test_tiny_crops_fit_the_teacher_stride():
    """IMG2LIDAR_TINY=1 quarters the check's 224x416 crops to multiples of the MobileNetV2
    head's x16 upsampling: 48x96 (56x104 would upsample 4x7 cells to 64x112, an error)."""
    from projects.img2lidar.engine.tiny_sizes import shrink_config
    cfg = Config.fromfile(str(SLIDR_CONFIG))
    assert cfg.model.image_head.scale_factor == 16
    shrink_config(cfg, log=lambda line: None)
    crops = [t['size'] for t in cfg.train_dataloader.dataset.pipeline
             if t['type'] == 'PairedRandomResizedCrop']
    assert crops == [(48, 96)]
