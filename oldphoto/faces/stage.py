"""The face stage: detect, align, re-synthesise and blend back every face of a restored photo.

It runs on the full-resolution restored image, after the global stage, whatever tiling that
stage used. Faces are detected and aligned on the image as given; each restored face is then
blended into the running result, in the detector's order, as the published code did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from oldphoto.deepio import to_8bit
from oldphoto.errors import UsageError
from oldphoto.faces.align import align_face, face_template, similarity_transform, to_uint8
from oldphoto.faces.blend import Canvas, face_window, match_histograms, paste_face
from oldphoto.faces.detect import DetectedFace, detect_faces
from oldphoto.fsutil import atomic_path

if TYPE_CHECKING:
    import torch


@dataclass
class FaceRecord:
    """One face of a photo: where it was found, how it was aligned, what was written for it."""

    index: int
    box: tuple[int, int, int, int]
    five_points: tuple[tuple[int, int], ...]
    landmarks: tuple[tuple[int, int], ...]
    aligned_to_photo: list[list[float]]
    size: int
    enhanced: bool
    files: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (lists instead of tuples); the 68 landmarks are left out for brevity."""
        record = asdict(self)
        del record["landmarks"]
        record["box"] = list(self.box)
        record["five_points"] = [list(p) for p in self.five_points]
        return record


def generator_size(generator: torch.nn.Module) -> int:
    """The face size S a generator was built for (its ``size`` config)."""
    size = getattr(generator, "size", None)
    if not isinstance(size, int):
        raise UsageError("the face generator does not say its face size (expected a SPADEGenerator)")
    return size


def restore_face(generator: torch.nn.Module, aligned: np.ndarray) -> np.ndarray:
    """Run the generator on one aligned uint8 face (S×S×3); return the restored face as uint8.

    Input ``(p/255 − 0.5)/0.5``; output ``uint8(clamp((y+1)/2, 0, 1)·255 + 0.5)`` as published.
    """
    import torch

    param = next(generator.parameters())
    x = torch.from_numpy(np.ascontiguousarray(aligned.transpose(2, 0, 1))).float()[None]
    x = ((x / 255.0 - 0.5) / 0.5).to(device=param.device, dtype=param.dtype)
    with torch.inference_mode():
        y = generator(x).float().cpu()[0]
    y = ((y + 1) / 2).clamp(0, 1) * 255 + 0.5
    return y.permute(1, 2, 0).numpy().astype(np.uint8)


def _save_png(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def _save_crops(
    save_dir: Path, stem: str, aligned: np.ndarray, restored: np.ndarray, matched: np.ndarray
) -> dict[str, str]:
    """Write the aligned, restored and side-by-side compare crops of one face; return their paths."""
    files = {
        "aligned": save_dir / f"{stem}_aligned.png",
        "restored": save_dir / f"{stem}_restored.png",
        "compare": save_dir / f"{stem}_compare.png",
    }
    _save_png(aligned, files["aligned"])
    _save_png(restored, files["restored"])
    _save_png(np.concatenate([aligned, matched], axis=1), files["compare"])
    return {k: str(v) for k, v in files.items()}


def enhance_faces(
    image: Image.Image | np.ndarray,
    generator: torch.nn.Module | None,
    *,
    size: int | None = None,
    strength: float = 1.0,
    save_dir: Path | str | None = None,
    save_prefix: str = "face",
    detector: Any = None,
) -> tuple[Any, list[FaceRecord]]:
    """Enhance every face of ``image``; return the new image and one record per face found.

    ``image`` is a PIL image (a PIL image comes back) or H×W×3 uint8 or uint16 samples (an
    array of the same type comes back). A 16-bit photo's faces are found, aligned and
    generated on its 8-bit rendering, and blended into its own 16-bit samples.

    ``generator`` is the face generator (its size sets S; ``size``, if given, must agree).
    ``strength`` in [0, 1] scales the blending mask: 1 is the published behaviour, 0 leaves the
    image untouched (faces are still detected and reported; the generator is not run, so it
    may be None). A photo without faces comes back unchanged. ``save_dir`` receives
    ``<save_prefix>_<N>_{aligned,restored,compare}.png`` per face (N from 1). ``detector``
    replaces the shared dlib detector (a callable: RGB uint8 array -> list of DetectedFace).
    Raises FacesUnavailable when dlib or the landmark model is missing.
    """
    if not 0.0 <= strength <= 1.0:
        raise UsageError(f"face strength must be between 0 and 1, got {strength}")
    if generator is None and strength > 0:
        raise UsageError("face enhancement needs a face generator unless the strength is 0")
    if generator is not None:
        gen_size = generator_size(generator)
        if size is not None and size != gen_size:
            raise UsageError(f"face size {size} does not match the face generator, which is built for {gen_size}")
        size = gen_size
    size = size or 256
    if isinstance(image, Image.Image):
        base = np.asarray(image.convert("RGB"), dtype=np.uint8)
    else:
        base = image
    photo = base if base.dtype == np.uint8 else to_8bit(base)
    faces: list[DetectedFace] = detect_faces(photo, detector)
    enhance = strength > 0
    if not faces or not enhance:
        records = [_record(i, face, _transform(face, size), size, False) for i, face in enumerate(faces, 1)]
        return image.copy(), records
    canvas = Canvas(base)
    records = []
    for i, face in enumerate(faces, 1):
        to_photo = _transform(face, size)
        to_face = np.linalg.inv(to_photo)
        aligned = align_face(photo, to_photo, size)
        restored = restore_face(generator, to_uint8(aligned))
        # The colour reference is the aligned original truncated to uint8, as published.
        matched = match_histograms(restored, aligned.astype(np.uint8))
        window = face_window(to_face, size, photo.shape[:2])
        if window is not None:
            region = paste_face(canvas.read(window), window, matched.astype(np.float64), to_photo, to_face,
                                photo.shape[:2], strength=strength)
            canvas.write(window, region)
        record = _record(i, face, to_photo, size, True)
        if save_dir is not None:
            record.files = _save_crops(Path(save_dir), f"{save_prefix}_{i}", to_uint8(aligned), restored, matched)
        records.append(record)
    return (Image.fromarray(canvas.finish()) if isinstance(image, Image.Image) else canvas.finish()), records


def _transform(face: DetectedFace, size: int) -> np.ndarray:
    """Aligned-face → photo similarity from the template to the face's five points."""
    return similarity_transform(face_template(size), np.array(face.five_points))


def _record(index: int, face: DetectedFace, to_photo: np.ndarray, size: int, enhanced: bool) -> FaceRecord:
    return FaceRecord(
        index=index,
        box=face.box,
        five_points=face.five_points,
        landmarks=face.landmarks,
        aligned_to_photo=to_photo.tolist(),
        size=size,
        enhanced=enhanced,
    )
