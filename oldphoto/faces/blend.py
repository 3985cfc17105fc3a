"""Putting a restored face back: histogram matching, warp back, mask softening, blending.

All in float64 numpy, on a window of the photo around the face (the published code worked on
the whole photo; outside the window its mask is 0 after softening, so the result is equal).
The mask softening reproduces OpenCV's ``erode`` (9×9 square, 3 iterations; the border never
erodes) and ``GaussianBlur`` (25×25, σ = 4.1, reflect-101 border) exactly.
"""

from __future__ import annotations

import numpy as np

from oldphoto.faces.align import nearest_inside, warp_affine

#: Erosion: a 9×9 square applied 3 times is a 25×25 square (radius 12).
ERODE_RADIUS = 3 * (9 // 2)
#: Gaussian blur kernel size and OpenCV's σ rule for σ = 0: 0.3·((k − 1)/2 − 1) + 0.8.
BLUR_SIZE = 25
BLUR_SIGMA = 0.3 * ((BLUR_SIZE - 1) / 2 - 1) + 0.8
#: Pixels a softened mask can reach outside the warped footprint (blur radius, plus slack).
_MARGIN = BLUR_SIZE // 2 + 4


def match_histograms(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-channel histogram matching of uint8 ``source`` to uint8 ``reference``.

    Each source level maps to the smallest reference level whose normalised CDF is at least
    the source level's CDF.
    """
    out = np.empty_like(source, dtype=np.uint8)
    for ch in range(source.shape[2]):
        src_cdf = np.cumsum(np.bincount(source[..., ch].ravel(), minlength=256)).astype(np.float64)
        ref_cdf = np.cumsum(np.bincount(reference[..., ch].ravel(), minlength=256)).astype(np.float64)
        src_cdf /= src_cdf[-1]
        ref_cdf /= ref_cdf[-1]
        lut = np.minimum(np.searchsorted(ref_cdf, src_cdf, side="left"), 255).astype(np.uint8)
        out[..., ch] = lut[source[..., ch]]
    return out


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Minimum over a (2r+1)² square; pixels beyond the border are ignored, as OpenCV's default."""
    padded = np.pad(mask, radius, mode="constant", constant_values=np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1, axis=0).min(axis=-1)
    return np.lib.stride_tricks.sliding_window_view(windows, 2 * radius + 1, axis=1).min(axis=-1)


def gaussian_kernel(size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian of ``size`` taps (float64), as OpenCV builds it for float images."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    k = np.exp(-(x * x) / (2 * sigma * sigma))
    return k / k.sum()


def _blur(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable convolution with reflect-101 borders (numpy's ``reflect``, OpenCV's default)."""
    r = len(kernel) // 2
    out = mask
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r, r)
        windows = np.lib.stride_tricks.sliding_window_view(np.pad(out, pad, mode="reflect"), len(kernel), axis=axis)
        out = windows @ kernel
    return out


def soften_mask(mask: np.ndarray) -> np.ndarray:
    """Shrink the face footprint (0/1) by erosion and feather it with a Gaussian; values in [0, 1]."""
    return _blur(_erode(mask * 255.0, ERODE_RADIUS), gaussian_kernel()) / 255.0


def face_window(photo_to_face: np.ndarray, size: int, shape: tuple[int, int]) -> tuple[slice, slice] | None:
    """Rows and columns of the photo that a face's softened mask can touch (None when none).

    The aligned square's corners are mapped into the photo and the box around them is
    widened by the blur's reach. Where the box is not cut by the photo's edge, the footprint
    is 0 along its border, so erosion and blur there equal those on the whole photo.
    """
    edge = size - 0.5
    corners = np.array([[-0.5, -0.5, 1.0], [edge, -0.5, 1.0], [-0.5, edge, 1.0], [edge, edge, 1.0]])
    mapped = corners @ np.linalg.inv(photo_to_face).T
    xy = mapped[:, :2] / mapped[:, 2:]
    (x0, y0), (x1, y1) = np.floor(xy.min(axis=0)), np.ceil(xy.max(axis=0))
    top, left = max(int(y0) - _MARGIN, 0), max(int(x0) - _MARGIN, 0)
    bottom, right = min(int(y1) + _MARGIN + 1, shape[0]), min(int(x1) + _MARGIN + 1, shape[1])
    if top >= bottom or left >= right:
        return None
    return slice(top, bottom), slice(left, right)


def footprint_mask(
    face_to_photo: np.ndarray,
    photo_to_face: np.ndarray,
    size: int,
    photo_shape: tuple[int, int],
    window: tuple[slice, slice],
) -> np.ndarray:
    """The aligned square's footprint over ``window`` of the photo (0/1, float64).

    As published: an all-ones photo warped to the face and back, both nearest neighbour.
    """
    forward = nearest_inside(face_to_photo, (size, size), photo_shape).astype(np.float64)[..., None]
    rows, cols = window
    local = (rows.stop - rows.start, cols.stop - cols.start)
    return warp_affine(forward, photo_to_face, local, order=0, origin=(rows.start, cols.start))[..., 0]


def paste_face(
    region: np.ndarray,
    window: tuple[slice, slice],
    face: np.ndarray,
    face_to_photo: np.ndarray,
    photo_to_face: np.ndarray,
    photo_shape: tuple[int, int],
    *,
    strength: float = 1.0,
) -> np.ndarray:
    """Blend ``face`` (S×S×3, 0..255) into ``region``, the running result over ``window``.

    The face is warped back bicubically through ``photo_to_face``; the softened footprint
    times ``strength`` weighs it against the photo. As published, the blend is divided by 255,
    clipped to [0, 1] and scaled back, so values stay in range for the next face.
    Returns the new region (float64, 0..255).
    """
    rows, cols = window
    origin = (rows.start, cols.start)
    footprint = footprint_mask(face_to_photo, photo_to_face, face.shape[0], photo_shape, window)
    warped = warp_affine(face, photo_to_face, footprint.shape, order=3, origin=origin)
    m = (soften_mask(footprint) * strength)[..., None]
    return np.clip((warped * m + region * (1 - m)) / 255.0, 0.0, 1.0) * 255.0


class Canvas:
    """The running result of the blending, exact in float64 where faces were pasted, uint8 elsewhere.

    The published code kept the whole photo in float64 between faces; only the windows around
    faces ever differ from the input, so only they are kept in float (a large scan stays cheap).
    """

    def __init__(self, photo: np.ndarray) -> None:
        #: uint16 photos are blended on the same 0..255 scale (v / 257) and scaled back at the end.
        self._scale = 257.0 if photo.dtype == np.uint16 else 1.0
        self._base = photo
        self._patches: list[tuple[tuple[slice, slice], np.ndarray]] = []

    def read(self, window: tuple[slice, slice]) -> np.ndarray:
        """The current float64 values over ``window`` (later patches over earlier ones)."""
        rows, cols = window
        region = self._base[rows, cols].astype(np.float64)
        if self._scale != 1.0:
            region /= self._scale
        for (prows, pcols), patch in self._patches:
            r0, r1 = max(rows.start, prows.start), min(rows.stop, prows.stop)
            c0, c1 = max(cols.start, pcols.start), min(cols.stop, pcols.stop)
            if r0 < r1 and c0 < c1:
                region[r0 - rows.start:r1 - rows.start, c0 - cols.start:c1 - cols.start] = patch[
                    r0 - prows.start:r1 - prows.start, c0 - pcols.start:c1 - pcols.start
                ]
        return region

    def write(self, window: tuple[slice, slice], region: np.ndarray) -> None:
        """Record new values over ``window``."""
        self._patches.append((window, region))

    def finish(self) -> np.ndarray:
        """The result in the photo's own type (round half to even), a new array."""
        out = self._base.copy()
        top = 255.0 * self._scale
        for (rows, cols), patch in self._patches:
            out[rows, cols] = np.clip(np.rint(patch * self._scale), 0, top).astype(out.dtype)
        return out
