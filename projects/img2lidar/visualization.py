"""Pictures of distillation: PCA colours of features, points drawn on images with their
superpixel boundaries, bird's-eye views of point labels with a class legend.

Used by ``tools/visualize.py``, ``tools/browse_dataset.py`` and :class:`BEVSegVisualizationHook`
(``tools/test.py --show-dir``); kept here so that they can be tested and reused.
"""
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np


def pca_rgb(feats: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """Project ``feats`` (N, D) on the 3 principal axes of ``fit`` (M, D), scaled to [0, 255]
    with the 2nd-98th percentiles of ``fit``."""
    mean = fit.mean(0)
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    proj_fit = (fit - mean) @ vt[:3].T
    lo, hi = np.percentile(proj_fit, 2, axis=0), np.percentile(proj_fit, 98, axis=0)
    proj = ((feats - mean) @ vt[:3].T - lo) / np.maximum(hi - lo, 1e-6)
    return (np.clip(proj, 0, 1) * 255).astype(np.uint8)


def draw_points(img: np.ndarray, pixels: np.ndarray, colors: np.ndarray,
                r: int = 1) -> np.ndarray:
    """``img`` with a filled circle of radius ``r`` in each colour (N, 3) at each pixel (N, 2)."""
    out = img.copy()
    for (x, y), c in zip(pixels, colors):
        cv2.circle(out, (int(x), int(y)), r, tuple(int(v) for v in c), -1)
    return out


def superpixel_boundaries(superpixels: np.ndarray) -> np.ndarray:
    """Where a pixel's superpixel differs from its left or upper neighbour's.

    Args:
        superpixels (np.ndarray): (H, W) superpixel ids.

    Returns:
        np.ndarray: (H, W) bool.
    """
    bound = np.zeros(superpixels.shape, bool)
    bound[:, 1:] |= superpixels[:, 1:] != superpixels[:, :-1]
    bound[1:] |= superpixels[1:] != superpixels[:-1]
    return bound


def depth_colors(depth: np.ndarray) -> np.ndarray:
    """OpenCV's JET colour (BGR) of each depth (N,) in metres: red near, blue from 64 m on.

    Returns:
        np.ndarray: (N, 3) uint8, BGR.
    """
    return cv2.applyColorMap(np.clip(255 - depth * 4, 0, 255).astype(np.uint8)[:, None],
                             cv2.COLORMAP_JET)[:, 0]


def draw_superpixels_and_points(img: np.ndarray, superpixels: Optional[np.ndarray],
                                pixels: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """A camera image with its superpixel boundaries in white and its paired points coloured by
    depth (:func:`depth_colors`).

    Args:
        img (np.ndarray): (H, W, 3) uint8 image, BGR.
        superpixels (np.ndarray, optional): (H, W) superpixel ids of the image; None draws no
            boundaries.
        pixels (np.ndarray): (P, 2) pixel (x, y) of each paired point.
        depth (np.ndarray): (P,) distance of each paired point to the sensor, in metres.

    Returns:
        np.ndarray: (H, W, 3) uint8, BGR.
    """
    out = img.copy()
    if superpixels is not None:
        out[superpixel_boundaries(superpixels)] = (255, 255, 255)
    return draw_points(out, pixels, depth_colors(depth))


def bev_legend(names: Sequence[str], colors_rgb: np.ndarray, height: int,
               width: int = 190) -> np.ndarray:
    """A legend panel (BGR): one colour swatch and class name per row, for the classes shown.

    Args:
        names (list[str]): Class names, in the order to list them.
        colors_rgb (np.ndarray): Their palette colours, (len(names), 3) RGB.
        height (int): Panel height in pixels (rows that do not fit are summarised).
        width (int): Panel width in pixels.

    Returns:
        np.ndarray: (height, width, 3) uint8, BGR.
    """
    panel = np.zeros((height, width, 3), np.uint8)
    cv2.putText(panel, 'classes', (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    row_h = 16
    fits = max((height - 24) // row_h, 1)
    shown = list(zip(names, colors_rgb))
    if len(shown) > fits:
        shown = shown[:fits - 1]
    for i, (name, rgb) in enumerate(shown):
        y = 24 + i * row_h
        cv2.rectangle(panel, (5, y), (17, y + 11), tuple(int(v) for v in rgb[::-1]), -1)
        cv2.putText(panel, name, (23, y + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    if len(shown) < len(names):
        cv2.putText(panel, f'... {len(names) - len(shown)} more', (5, 24 + len(shown) * row_h + 10),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    return panel


#: RGB colour of the points whose label is not a class (the dataset's ignore index)
IGNORED_RGB = (40, 40, 40)


def bev_label_panel(xy: np.ndarray, labels: np.ndarray, colors_rgb: np.ndarray, title: str,
                    size: int = 400, resolution: float = 0.2) -> np.ndarray:
    """A bird's-eye view of labelled points (BGR), the sensor at the centre, x to the right
    and y up; points outside the square are left out.

    Args:
        xy (np.ndarray): Point coordinates in metres, (N, 2).
        labels (np.ndarray): Label of every point, (N,); labels past the palette take its
            last colour.
        colors_rgb (np.ndarray): Colour of every label, (L, 3) uint8 RGB.
        title (str): Written in the top-left corner.
        size (int): Side of the square in pixels.
        resolution (float): Metres per pixel (0.2 with 400 pixels: 80 m x 80 m).

    Returns:
        np.ndarray: (size, size, 3) uint8, BGR.
    """
    canvas = np.zeros((size, size, 3), np.uint8)
    u = (size / 2 + xy[:, 0] / resolution).astype(int)
    v = (size / 2 - xy[:, 1] / resolution).astype(int)
    inside = (u >= 0) & (u < size) & (v >= 0) & (v < size)
    labels = np.clip(labels[inside], 0, len(colors_rgb) - 1)
    canvas[v[inside], u[inside]] = colors_rgb[labels][:, ::-1]
    cv2.putText(canvas, title, (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    return canvas


def bev_labels_figure(xy: np.ndarray, label_sets: Sequence[Tuple[str, np.ndarray]],
                      classes: Sequence[str], palette: Sequence[Sequence[int]],
                      size: int = 400, resolution: float = 0.2) -> np.ndarray:
    """Bird's-eye views of the same points under several labellings (e.g. ground truth and
    prediction) side by side, then a legend of the classes that appear in any of them.

    Args:
        xy (np.ndarray): Point coordinates in metres, (N, 2).
        label_sets (list[tuple[str, np.ndarray]]): Title and labels (N,) of each view; labels
            ``len(classes)`` and above (the ignore index) are drawn in :data:`IGNORED_RGB`.
        classes (Sequence[str]): Class names, indexed by label.
        palette (Sequence[Sequence[int]]): RGB colour of every class, as in a dataset's
            ``metainfo['palette']``.
        size (int): Side of each view in pixels (and height of the legend).
        resolution (float): Metres per pixel.

    Returns:
        np.ndarray: (size, len(label_sets) * (size + 8) + 190, 3) uint8, BGR.
    """
    colors = np.array(list(palette) + [IGNORED_RGB], dtype=np.uint8)
    gap = np.full((size, 8, 3), 255, np.uint8)
    parts = []
    present = set()
    for title, labels in label_sets:
        parts += [bev_label_panel(xy, labels, colors, title, size, resolution), gap]
        present |= set(np.unique(labels[labels < len(classes)]).tolist())
    shown = sorted(present)
    parts.append(bev_legend([classes[c] for c in shown], colors[shown], size))
    return np.concatenate(parts, 1)
