"""Pictures of distillation: PCA colours of features, points drawn on images, a class legend.

Used by ``tools/visualize.py``; kept here so that they can be tested and reused.
"""
from typing import Sequence

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
