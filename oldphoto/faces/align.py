"""Five-point face alignment: the similarity transform and affine warps with scikit-image's rules.

A transform matrix here is 3×3 and maps *output* pixel coordinates (x = column, y = row) to
*input* coordinates, as ``skimage.transform.warp`` takes it. Samples outside the input are 0.
The warps are plain numpy in float64 (the published code's older scikit-image returned
float64 for every order): nearest (order 0, C ``round``: half away from zero), bilinear
(order 1) and bicubic (order 3, Catmull-Rom convolution over the 4×4 neighbourhood).
"""

from __future__ import annotations

import numpy as np

#: The published five-point template (eyes, nose tip, mouth corners) in a 256-pixel square.
TEMPLATE_256 = np.array([[196.0, 226.0], [316.0, 226.0], [256.0, 286.0], [220.0, 360.4], [292.0, 360.4]])
#: How much wider than the template the aligned square is (published ``target_face_scale``).
FACE_SCALE = 1.3


def face_template(size: int, scale: float = FACE_SCALE) -> np.ndarray:
    """The five template points in an aligned square of ``size`` pixels, widened by ``scale``.

    Computed in float32, as the published code did: the template's float32 rounding moves the
    fitted transform by about 1e-5, enough to be visible in exact comparisons.
    """
    normalized = TEMPLATE_256.astype(np.float32) / 256.0 - 1.0
    return (normalized * scale + 1.0) / 2.0 * size


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking ``src`` to ``dst``.

    Umeyama's closed form, the method of ``SimilarityTransform.estimate``; numpy's dtype rules
    are kept (a float32 ``src`` gives a float32 variance), so the published matrix is met
    bit for bit. Returns a 3×3 float64 matrix.
    """
    src = np.asarray(src)
    dst = np.asarray(dst)
    dim = src.shape[1]
    src_centred = src - src.mean(axis=0)
    dst_mean = dst.mean(axis=0)
    covariance = (dst - dst_mean).T @ src_centred / src.shape[0]
    u, singular, vt = np.linalg.svd(covariance)
    signs = np.ones(dim)
    if np.linalg.det(covariance) < 0:
        signs[-1] = -1.0  # a reflection fits better; take the closest rotation instead
    rotation = u @ np.diag(signs) @ vt
    scale = 1.0 / src_centred.var(axis=0).sum() * (singular @ signs)
    matrix = np.eye(dim + 1)
    matrix[:dim, dim] = dst_mean - scale * (rotation @ src.mean(axis=0))
    matrix[:dim, :dim] = rotation * scale
    return matrix


def _coordinates(matrix: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Input (row, col) sampled by output pixels ``rows`` × ``cols`` (1-D ranges) through ``matrix``."""
    r, c = np.meshgrid(rows.astype(np.float64), cols.astype(np.float64), indexing="ij")
    x = matrix[0, 0] * c + matrix[0, 1] * r + matrix[0, 2]
    y = matrix[1, 0] * c + matrix[1, 1] * r + matrix[1, 2]
    if not np.array_equal(matrix[2], [0.0, 0.0, 1.0]):
        z = matrix[2, 0] * c + matrix[2, 1] * r + matrix[2, 2]
        x, y = x / z, y / z
    return y, x


def _gather(image: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``image[r, c]`` with integer index arrays; 0 where the index falls outside the image."""
    h, w = image.shape[:2]
    inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    values = image[np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)]
    return np.where(inside[..., None], values, 0.0)


def _round_half_away(v: np.ndarray) -> np.ndarray:
    """C ``round()`` to int64: half away from zero (``np.rint`` would round half to even)."""
    return (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int64)


def nearest_inside(
    matrix: np.ndarray, shape: tuple[int, int], source_shape: tuple[int, int], origin: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """Boolean ``shape`` map: output pixels whose nearest source pixel lies inside ``source_shape``.

    The same as warping an all-ones image with order 0, without building the image.
    """
    rows = np.arange(shape[0]) + origin[0]
    cols = np.arange(shape[1]) + origin[1]
    r, c = _coordinates(np.asarray(matrix, dtype=np.float64), rows, cols)
    rn, cn = _round_half_away(r), _round_half_away(c)
    return (rn >= 0) & (rn < source_shape[0]) & (cn >= 0) & (cn < source_shape[1])


def _cubic_weights(t: np.ndarray) -> list[np.ndarray]:
    """Catmull-Rom weights of the four samples at offsets −1, 0, 1, 2 for fraction ``t``."""
    t2, t3 = t * t, t * t * t
    return [
        0.5 * (-t3 + 2 * t2 - t),
        0.5 * (3 * t3 - 5 * t2 + 2),
        0.5 * (-3 * t3 + 4 * t2 + t),
        0.5 * (t3 - t2),
    ]


def warp_affine(
    image: np.ndarray,
    matrix: np.ndarray,
    shape: tuple[int, int],
    order: int,
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Sample ``image`` (H×W×C) through ``matrix`` into an output of ``shape`` (rows, cols), float64.

    ``origin`` (row, col) offsets the output grid, so a window of a larger warp can be
    computed alone. ``order`` is 0 (nearest), 1 (bilinear) or 3 (bicubic).
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 2:
        img = img[..., None]
    rows = np.arange(shape[0]) + origin[0]
    cols = np.arange(shape[1]) + origin[1]
    r, c = _coordinates(np.asarray(matrix, dtype=np.float64), rows, cols)
    if order == 0:
        out = _gather(img, _round_half_away(r), _round_half_away(c))
    elif order == 1:
        r0, c0 = np.floor(r), np.floor(c)
        dr, dc = (r - r0)[..., None], (c - c0)[..., None]
        r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
        top = (1 - dc) * _gather(img, r0, c0) + dc * _gather(img, r0, c0 + 1)
        bottom = (1 - dc) * _gather(img, r0 + 1, c0) + dc * _gather(img, r0 + 1, c0 + 1)
        out = (1 - dr) * top + dr * bottom
    elif order == 3:
        r0, c0 = np.floor(r), np.floor(c)
        wr = [w[..., None] for w in _cubic_weights(r - r0)]
        wc = [w[..., None] for w in _cubic_weights(c - c0)]
        r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
        out = np.zeros((*r.shape, img.shape[2]))
        for i in range(4):
            row = sum(wc[j] * _gather(img, r0 + i - 1, c0 + j - 1) for j in range(4))
            out += wr[i] * row
    else:
        raise ValueError(f"unsupported interpolation order {order}")
    return out if np.asarray(image).ndim == 3 else out[..., 0]


def align_face(photo: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The aligned ``size``×``size`` face (float64, 0..255, bilinear) through the aligned→photo ``matrix``."""
    return warp_affine(photo, matrix, (size, size), order=1)


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Round half to even and clip to uint8 (scikit-image's ``img_as_ubyte`` on 0..255 data)."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)
