"""``Restorer``: load the networks once, restore many photos. Every entry point uses it.

The CLI, batch runs and Python callers all go through :meth:`Restorer.restore_detailed`, so
pre-processing, mode choice, detection, tiling and post-processing are decided in one place.
A Restorer holds models and caches on its device; it is safe to share between threads (calls
are serialised by a lock) but runs one photo at a time — use one Restorer per device.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image

from oldphoto.errors import ImageError, UsageError, WeightsError
from oldphoto.options import MODES

ImageInput = Union[str, Path, Image.Image, np.ndarray]
FACE_SIZES = (256, 512)
#: ``auto`` switches scratched photos to the high-resolution mode above this many pixels.
#: The scratch mode's non-local block attends every latent position to every other, so its
#: cost grows with the square of the photo's area: at 1 MP (65,536 latent positions) it
#: already equals the ~4.7 TFLOP of all the convolutions, and it doubles relative to them
#: with every further doubling of area. The patch-attention mode was published for exactly
#: these high-resolution inputs and its cost stays linear in the area.
HR_AUTO_PIXELS = 1_000_000


@dataclass
class RestoreResult:
    """A restored photo and how it was made."""

    image: Image.Image
    mode: str
    mask: Image.Image | None = None
    detected_mask: Image.Image | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    faces_enabled: bool = False
    faces: list[dict[str, Any]] = field(default_factory=list)


def _as_pil(image: ImageInput, what: str) -> tuple[Image.Image, list[str]]:
    """Accept a path, a PIL image or a uint8/uint16/float array; return (PIL image, warnings)."""
    if isinstance(image, (str, Path)):
        from oldphoto.imageio import load_image

        loaded = load_image(image)
        return loaded.image, list(loaded.warnings)
    if isinstance(image, Image.Image):
        return image, []
    if isinstance(image, np.ndarray):
        a = image
        if a.dtype == np.uint16:
            a = (a.astype(np.float64) / 257.0).round().astype(np.uint8)
        elif a.dtype.kind == "f":
            a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        elif a.dtype != np.uint8:
            raise ImageError(f"{what}: unsupported array dtype {a.dtype} (use uint8, uint16 or float in [0, 1])")
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[..., 0]
        if a.ndim == 2:
            return Image.fromarray(a, mode="L"), []
        if a.ndim == 3 and a.shape[2] in (3, 4):
            return Image.fromarray(np.ascontiguousarray(a[..., :3]), mode="RGB"), []
        raise ImageError(f"{what}: array of shape {a.shape} is not an H×W or H×W×3 image")
    raise ImageError(f"{what}: expected a path, a PIL image or a numpy array, got {type(image).__name__}")


def _as_mask(mask: ImageInput, size: tuple[int, int]) -> Image.Image:
    """Any mask input to an "L" image at ``size`` (white = damaged), resized nearest."""
    if isinstance(mask, (str, Path)):
        from oldphoto.imageio import load_mask

        return load_mask(mask, size)
    pil, _ = _as_pil(mask, "mask")
    if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
        pil = pil.convert("RGBA")
    pil = pil.convert("L")
    return pil if pil.size == size else pil.resize(size, Image.Resampling.NEAREST)


class Restorer:
    """Restore old photos with the published networks: load once, call :meth:`restore` many times.

    ``weights`` is a folder in oldphoto's format (what ``oldphoto weights import-official``
    writes); without it, weights come from the cache or the Hub. Models load lazily, per mode.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        device: str = "auto",
        precision: str = "auto",
        tile: str | int = "auto",
        max_memory: str | int | None = "auto",
        repo: str | None = None,
        revision: str | None = None,
        faces: bool | None = None,
        face_size: int | None = None,
        face_strength: float = 1.0,
    ) -> None:
        import torch

        from oldphoto.devices import select_device, select_precision

        self.weights = Path(weights) if weights is not None else None
        self.device = select_device(device)
        self.precision = select_precision(precision, self.device)
        from oldphoto.tiling import parse_memory, parse_tile

        parse_tile(tile)
        parse_memory(max_memory)  # bad values fail here, before the first photo
        self.tile = tile
        self.max_memory = max_memory
        self.repo = repo
        self.revision = revision
        if face_size is not None and face_size not in FACE_SIZES:
            raise UsageError(f"face size must be 256 or 512, got {face_size}")
        if not 0.0 <= face_strength <= 1.0:
            raise UsageError(f"face strength must be between 0 and 1, got {face_strength}")
        if faces:
            from oldphoto.faces.availability import landmark_model_path, require_dlib

            require_dlib()
            landmark_model_path()
        self.faces = faces
        self.face_size = face_size
        self.face_strength = face_strength
        self._models: dict[str, tuple[dict[str, Any], torch.nn.ModuleDict]] = {}
        self._faces_present: dict[str, bool] = {}
        self._lock = threading.Lock()

    def model(self, name: str) -> tuple[dict[str, Any], Any]:
        """Return ``(meta, bundle)`` of model ``name``, loading it on first use."""
        if name not in self._models:
            from oldphoto.checkpoint import has_checkpoint, load_checkpoint
            from oldphoto.devices import place
            from oldphoto.models import build_bundle

            if self.weights is not None:
                if not has_checkpoint(self.weights, name):
                    raise WeightsError(
                        f"{self.weights}: no '{name}' model ({name}.safetensors + {name}.json); "
                        "import it with 'oldphoto weights import-official' or omit --weights to download it"
                    )
                folder = self.weights
            else:
                from oldphoto.hub import resolve_weights

                folder = resolve_weights(name, repo=self.repo, revision=self.revision)
            meta, tensors = load_checkpoint(folder, name)
            bundle = build_bundle(meta["networks"])
            try:
                bundle.load_state_dict(tensors, strict=True)
            except RuntimeError as exc:
                raise WeightsError(f"{folder}/{name}.safetensors: does not match its config ({exc})") from None
            place(bundle, self.device, self.precision)
            self._models[name] = (meta, bundle)
        return self._models[name]

    def detect(self, image: ImageInput, *, postprocess: str = "default") -> Image.Image:
        """Return the detected damage mask ("L", 255 = damaged) at the photo's size."""
        pil, _ = _as_pil(image, "image")
        with self._lock:
            return self._detect(pil, postprocess)

    def _detect(self, image: Image.Image, postprocess: str) -> Image.Image:
        import torch

        from oldphoto.detection import detect_probability, detection_input, probability_to_mask
        from oldphoto.devices import autocast

        meta, bundle = self.model("detector")
        x, size = detection_input(image, meta["pipeline"], postprocess)
        with torch.inference_mode(), autocast(self.device, self.precision):
            prob = detect_probability(bundle["unet"], x.to(self.device), size)
        return probability_to_mask(prob, float(meta["pipeline"].get("threshold", 0.4)))

    def restore(
        self,
        image: ImageInput,
        mask: ImageInput | None = None,
        *,
        mode: str = "auto",
        detect_scratches: bool = False,
        postprocess: str = "default",
    ) -> Image.Image:
        """Restore one photo and return it (same size as the input unless ``postprocess='published'``)."""
        return self.restore_detailed(
            image, mask, mode=mode, detect_scratches=detect_scratches, postprocess=postprocess
        ).image

    def restore_detailed(
        self,
        image: ImageInput,
        mask: ImageInput | None = None,
        *,
        mode: str = "auto",
        detect_scratches: bool = False,
        postprocess: str = "default",
        progress: Callable[[int, int], None] | None = None,
        save_faces: str | Path | None = None,
        save_prefix: str = "face",
    ) -> RestoreResult:
        """Restore one photo; return the image with the mode used, the masks and the time taken.

        ``mode='auto'`` picks scratch when a mask is given or detected (hr above
        ``HR_AUTO_PIXELS``), quality otherwise. ``progress(done, total)`` is called as the
        work advances (tiles of a large scan). ``mode='none'`` skips the global stage. The face
        stage then runs on the full-resolution result when enabled (see :meth:`faces_enabled`);
        ``save_faces`` receives the aligned, restored and compare crops of each face.
        """
        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r} (choose {', '.join(MODES)})")
        start = time.perf_counter()
        pil, warnings = _as_pil(image, "image")
        grey = pil.mode in ("L", "I;16", "I", "1", "LA")
        rgb = pil.convert("RGB")
        with self._lock:
            damage = _as_mask(mask, rgb.size) if mask is not None else None
            detected = None
            if damage is None and (detect_scratches or mode in ("scratch", "hr")):
                detected = self._detect(rgb, postprocess)
                if postprocess == "default" and detected.size != rgb.size:
                    detected = detected.resize(rgb.size, Image.Resampling.NEAREST)
                damage = detected
            if mode == "auto":
                if damage is None or not np.asarray(damage).any():
                    mode = "quality"
                else:
                    mode = "hr" if rgb.width * rgb.height > HR_AUTO_PIXELS else "scratch"
            if mode == "none":
                out = rgb
            else:
                pixels = self._restore_pixels(rgb, damage if mode != "quality" else None, mode, postprocess, progress)
                out = Image.fromarray(pixels, mode="RGB")
            faces_on = self.faces_enabled(mode)
            records: list[dict[str, Any]] = []
            if faces_on:
                out, records = self._enhance_faces(out, mode, save_faces, save_prefix)
        if grey:
            out = out.convert("L")
        keep_mask = mode not in ("quality", "none")
        return RestoreResult(
            image=out,
            mode=mode,
            mask=damage if keep_mask else None,
            detected_mask=detected,
            seconds=time.perf_counter() - start,
            warnings=warnings,
            faces_enabled=faces_on,
            faces=records,
        )

    def face_model_name(self, mode: str) -> str:
        """``face512`` when asked for, or following ``hr`` mode by default; else ``face256``."""
        size = self.face_size or (512 if mode == "hr" else 256)
        return f"face{size}"

    def faces_enabled(self, mode: str) -> bool:
        """Whether the face stage runs: as asked, or by default when the extra and weights are present.

        ``faces=True`` was checked at construction (a missing extra raised FacesUnavailable).
        The default never downloads face weights; it only uses ones already here, and looks
        once per face model rather than once per photo.
        """
        if self.faces is not None:
            return self.faces
        name = self.face_model_name(mode)
        if name not in self._faces_present:
            self._faces_present[name] = self._face_weights_here(name)
        return self._faces_present[name]

    def _face_weights_here(self, name: str) -> bool:
        from oldphoto.faces import faces_available

        if not faces_available():
            return False
        if self.weights is not None:
            from oldphoto.checkpoint import has_checkpoint

            return has_checkpoint(self.weights, name)
        from oldphoto.hub import cached_folder

        return cached_folder(name, repo=self.repo, revision=self.revision) is not None

    def _enhance_faces(
        self, image: Image.Image, mode: str, save_dir: str | Path | None, prefix: str
    ) -> tuple[Image.Image, list[dict[str, Any]]]:
        import torch

        from oldphoto.faces import enhance_faces

        generator = None
        if self.face_strength > 0:
            _, bundle = self.model(self.face_model_name(mode))
            generator = bundle["generator"]
        with torch.inference_mode():
            out, records = enhance_faces(
                image, generator, strength=self.face_strength, save_dir=save_dir, save_prefix=prefix
            )
        return out, [r.as_json() for r in records]

    def _restore_pixels(
        self,
        image: Image.Image,
        mask: Image.Image | None,
        mode: str,
        postprocess: str,
        progress: Callable[[int, int], None] | None,
    ) -> np.ndarray:
        from oldphoto.pipeline import prepare
        from oldphoto.tiling import restore_pixels

        meta, bundle = self.model(mode)
        return restore_pixels(
            bundle,
            prepare(image, mask, meta["pipeline"], postprocess),
            device=self.device,
            precision=self.precision,
            tile=self.tile,
            max_memory=self.max_memory,
            progress=progress,
        )
