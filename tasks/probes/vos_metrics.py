"""DAVIS-style video object segmentation scores: region similarity J and boundary F-measure F.

    j = region_similarity(pred, gt)          # IoU of two (H, W) bool masks; 1 when both are empty
    f = boundary_f_measure(pred, gt)         # F-measure of the two masks' boundaries, with a tolerance
    scores = sequence_scores(pred, gt, objects=[1, 2])   # per object: J and F averaged over frames 1..T-1

The boundary of a mask holds the pixels whose right, bottom or bottom-right neighbour has the other value
(pixels outside the image count as equal, so the image border is no boundary). A predicted boundary pixel
is correct when a ground-truth boundary pixel lies within `tolerance` (a disk); by default the tolerance is
`ceil(0.008 × image diagonal)` pixels, as in the DAVIS benchmark. Precision and recall follow DAVIS's
conventions for empty boundaries: both empty → F = 1; one empty → F = 0.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

BOUNDARY_TOLERANCE = 0.008  # of the image diagonal


def region_similarity(pred: np.ndarray, gt: np.ndarray) -> float:
    """Jaccard index |pred ∩ gt| / |pred ∪ gt| of two `(H, W)` bool masks (1.0 when both are empty)."""
    pred, gt = _check_pair(pred, gt)
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """`(H, W)` bool: pixels whose right, bottom or bottom-right neighbour differs (border: no boundary)."""
    mask = np.asarray(mask, dtype=bool)
    right, below, diagonal = mask.copy(), mask.copy(), mask.copy()
    right[:, :-1] = mask[:, 1:]
    below[:-1, :] = mask[1:, :]
    diagonal[:-1, :-1] = mask[1:, 1:]
    return (mask ^ right) | (mask ^ below) | (mask ^ diagonal)


def boundary_tolerance(shape: Sequence[int], tolerance: float = BOUNDARY_TOLERANCE) -> int:
    """Tolerance radius in pixels: `tolerance` itself when ≥ 1, else ceil(tolerance × diagonal)."""
    if tolerance >= 1:
        return int(tolerance)
    return int(math.ceil(tolerance * math.hypot(shape[0], shape[1])))


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a `(H, W)` bool mask by a disk of `radius` pixels."""
    if radius <= 0:
        return mask
    import cv2
    from skimage.morphology import disk

    return cv2.dilate(mask.astype(np.uint8), disk(radius).astype(np.uint8)).astype(bool)


def boundary_f_measure(pred: np.ndarray, gt: np.ndarray, tolerance: float = BOUNDARY_TOLERANCE) -> float:
    """Boundary F-measure of two `(H, W)` bool masks (module docstring)."""
    pred, gt = _check_pair(pred, gt)
    pred_b, gt_b = boundary_map(pred), boundary_map(gt)
    radius = boundary_tolerance(pred.shape, tolerance)
    n_pred, n_gt = int(pred_b.sum()), int(gt_b.sum())
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0
    precision = np.logical_and(pred_b, _dilate(gt_b, radius)).sum() / n_pred
    recall = np.logical_and(gt_b, _dilate(pred_b, radius)).sum() / n_gt
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def sequence_scores(
    pred: np.ndarray, gt: np.ndarray, objects: Sequence[int], *, skip_first: bool = True
) -> dict[int, tuple[float, float]]:
    """Per object id: (J, F) averaged over frames of `(T, H, W)` integer label maps.

    The first frame is skipped by default (it is given to the method, as in DAVIS). An object is the mask
    `labels == id`; `objects` are the ids to score (the background 0 is not one of them).
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"pred and gt must both be (T, H, W) label maps, got {pred.shape} and {gt.shape}")
    frames = range(1 if skip_first and len(gt) > 1 else 0, len(gt))
    scores = {}
    for obj in objects:
        js = [region_similarity(pred[t] == obj, gt[t] == obj) for t in frames]
        fs = [boundary_f_measure(pred[t] == obj, gt[t] == obj) for t in frames]
        scores[int(obj)] = (float(np.mean(js)), float(np.mean(fs)))
    return scores


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"pred and gt must both be (H, W) masks of one size, got {pred.shape} and {gt.shape}")
    return pred, gt
