"""Face detection and landmarks with dlib, as the published stage ran them.

dlib's HOG frontal detector on the RGB uint8 image with no upsampling, the 68-point shape
predictor per face, and the five alignment points (eye centres truncated to integers, nose
tip, mouth corners). Faces keep the detector's order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from oldphoto.faces.availability import landmark_model_path, require_dlib


@dataclass(frozen=True)
class DetectedFace:
    """One face: detector box (left, top, right, bottom), 68 landmarks and the five points (x, y)."""

    box: tuple[int, int, int, int]
    landmarks: tuple[tuple[int, int], ...]
    five_points: tuple[tuple[int, int], ...]


def five_points(landmarks: np.ndarray | list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Left eye, right eye, nose tip, left and right mouth corner from the 68 landmarks.

    Eye centres are the means of the eye corners truncated toward zero, like ``int()`` in
    the published code.
    """
    p = [(int(x), int(y)) for x, y in landmarks]

    def mid(a: int, b: int) -> tuple[int, int]:
        return int((p[a][0] + p[b][0]) / 2), int((p[a][1] + p[b][1]) / 2)

    return mid(36, 39), mid(42, 45), p[30], p[48], p[54]


class FaceDetector:
    """dlib's frontal face detector plus the 68-point shape predictor, loaded once."""

    def __init__(self) -> None:
        dlib = require_dlib()
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(landmark_model_path()))

    def __call__(self, rgb: np.ndarray) -> list[DetectedFace]:
        """Detect faces in an H×W×3 uint8 RGB array; return them in the detector's order."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        faces = []
        for rect in self._detector(rgb):
            shape = self._predictor(rgb, rect)
            marks = tuple((int(shape.part(i).x), int(shape.part(i).y)) for i in range(shape.num_parts))
            box = (int(rect.left()), int(rect.top()), int(rect.right()), int(rect.bottom()))
            faces.append(DetectedFace(box=box, landmarks=marks, five_points=five_points(marks)))
        return faces


@cache
def default_detector() -> FaceDetector:
    """A process-wide detector (dlib's models take a moment to load)."""
    return FaceDetector()


def detect_faces(rgb: np.ndarray, detector: Any = None) -> list[DetectedFace]:
    """Detect faces with ``detector`` (default: the shared dlib one) in an RGB uint8 array."""
    return (detector or default_detector())(rgb)
