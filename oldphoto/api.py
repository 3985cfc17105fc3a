"""``Restorer``: load the networks once, restore many photos. Every entry point uses it.

The CLI, batch runs and Python callers all go through :meth:`Restorer.restore_detailed`, so
pre-processing, mode choice, detection, tiling and post-processing are decided in one place.
A Restorer holds models and caches on its device; it is safe to share between threads (calls
are serialised by a lock) but runs one photo at a time — use one Restorer per device.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from oldphoto.inputs import ImageInput, load_mask, load_photo
from oldphoto.options import check_face_size, check_face_strength, check_mask_mode, check_mode, check_model, check_postprocess

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
    #: Which model restored it: ``published``, ``lite`` (bundled) or the ``--weights`` folder.
    model: str = ""


class Restorer:
    """Restore old photos with the published networks: load once, call :meth:`restore` many times.

    ``weights`` is a folder in oldphoto's format (what ``oldphoto weights import-official``
    writes); without it, weights come from the cache or the Hub. Models load lazily, per mode.
    ``model`` is ``auto`` (published weights when reachable, else the bundled ``lite`` model,
    decided once by :meth:`choose`), ``published`` or ``lite``.
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
        model: str = "auto",
    ) -> None:
        import torch

        from oldphoto.weights.choice import ModelChoice

        from oldphoto.devices import parse_precision, select_device, select_precision, slow_precision_reason

        self.weights = Path(weights) if weights is not None else None
        self.model_spec = check_model(model, weights)
        self.choice: ModelChoice | None = None
        self.device = select_device(device)
        self.precision = select_precision(precision, self.device)
        self.precision_spec = parse_precision(precision)
        self._precisions: dict[str, str] = {}
        slow = slow_precision_reason(self.precision, self.device)
        self._untold: list[str] = [slow] if slow else []  # one-line notices, see notices()
        from oldphoto.tiling import parse_memory, parse_tile

        parse_tile(tile)
        parse_memory(max_memory)  # bad values fail here, before the first photo
        self.tile = tile
        self.max_memory = max_memory
        self.repo = repo
        self.revision = revision
        check_face_size(face_size)
        check_face_strength(face_strength)
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

    def choose(self, mode: str = "auto", detect: bool = False, masked: bool = False, progress: bool = True) -> Any:
        """Decide, once, which model restores (see :mod:`oldphoto.weights.choice`) and return the choice.

        ``mode``, ``detect`` and ``masked`` say what the run will ask for, so ``auto`` knows
        whether lite could stand in; later calls return the first answer.
        The choice's ``notice`` is the one line a caller should show when lite was picked.
        """
        if self.choice is None:
            from oldphoto.weights.choice import choose_model

            self.choice = choose_model(
                self.model_spec, weights_dir=self.weights, repo=self.repo, revision=self.revision,
                mode=mode, detect=detect, masked=masked, progress=progress,
            )
            if self.choice.notice:
                self._untold.append(self.choice.notice)
        return self.choice

    def notices(self) -> list[str]:
        """The one-line notices not yet shown (a slow precision, the fallback to lite), each returned once.

        The CLI prints them before the first photo; whatever is still untold when a photo is
        restored is issued as a Python warning instead, so library callers see it too.
        """
        told, self._untold = self._untold, []
        return told

    def model(self, name: str) -> tuple[dict[str, Any], Any]:
        """Return ``(meta, bundle)`` of model ``name``, loading it on first use."""
        if name not in self._models:
            from oldphoto.devices import model_precision, place
            from oldphoto.weights.load import load_model

            folder = self.choose().folder_for(name)
            meta, bundle = load_model(name, weights_dir=folder, repo=self.repo, revision=self.revision)
            self._precisions[name] = model_precision(self.precision_spec, self.precision, self.device, meta)
            place(bundle, self.device, self._precisions[name])
            self._models[name] = (meta, bundle)
        return self._models[name]

    def detect(self, image: ImageInput, *, postprocess: str = "default") -> Image.Image:
        """Return the detected damage mask ("L", 255 = damaged) at the photo's size."""
        check_postprocess(postprocess)
        photo = load_photo(image)
        with self._lock:
            return self._detect(photo.image, postprocess)

    def _detect(self, image: Image.Image, postprocess: str) -> Image.Image:
        import torch

        from oldphoto.detection import detect_probability, detection_input, mask_from_probability
        from oldphoto.devices import autocast

        meta, bundle = self.model("detector")
        x, size = detection_input(image, meta["pipeline"], postprocess)
        with torch.inference_mode(), autocast(self.device, self._precisions.get("detector", self.precision)):
            prob = detect_probability(bundle["unet"], x.to(self.device), size)
        return mask_from_probability(prob, meta["pipeline"])

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
        ``HR_AUTO_PIXELS``, unless the bundled lite model, which has no hr mode, restores),
        quality otherwise. ``progress(done, total)`` is called as the
        work advances (tiles of a large scan). ``mode='none'`` skips the global stage. The face
        stage then runs on the full-resolution result when enabled (see :meth:`faces_enabled`);
        ``save_faces`` receives the aligned, restored and compare crops of each face.
        """
        check_mode(mode)
        check_postprocess(postprocess)
        check_mask_mode(mode, mask is not None)
        start = time.perf_counter()
        photo = load_photo(image)
        rgb = photo.image.convert("RGB")
        damage = load_mask(mask, rgb.size) if mask is not None else None
        with self._lock:
            self.choose(mode, detect_scratches, damage is not None)
            for notice in self.notices():
                warnings.warn(notice, stacklevel=2)
            detected = None
            if damage is None and (detect_scratches or mode in ("scratch", "hr")):
                detected = self._detect(rgb, postprocess)
                damage = detected
            if mode == "auto":
                if damage is None or not np.asarray(damage).any():
                    mode = "quality"
                else:
                    big = rgb.width * rgb.height > HR_AUTO_PIXELS
                    mode = "hr" if big and self.choose().has("hr") else "scratch"  # lite has no hr mode
            if mode == "none":
                out = rgb
            else:
                pixels = self._restore_pixels(rgb, damage if mode != "quality" else None, mode, postprocess, progress)
                out = Image.fromarray(pixels, mode="RGB")
            faces_on = self.faces_enabled(mode)
            records: list[dict[str, Any]] = []
            if faces_on:
                out, records = self._enhance_faces(out, mode, save_faces, save_prefix)
        if photo.is_grey:
            out = out.convert("L")
        keep_mask = mode not in ("quality", "none")
        return RestoreResult(
            image=out,
            mode=mode,
            mask=damage if keep_mask else None,
            detected_mask=detected,
            seconds=time.perf_counter() - start,
            warnings=photo.warnings,
            faces_enabled=faces_on,
            faces=records,
            model=self.choice.name if self.choice is not None and mode != "none" else "",
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
        from oldphoto.weights.resolve import find_here

        return find_here(name, weights_dir=self.weights, repo=self.repo, revision=self.revision) is not None

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
        """Run mode ``mode``'s networks on the photo; then what its card's pipeline adds (lite scratch:
        keep the undamaged pixels, then restore the result in its ``then`` mode)."""
        from oldphoto.pipeline import keep_undamaged, prepare
        from oldphoto.tiling import restore_pixels

        meta, bundle = self.model(mode)
        pipeline = meta["pipeline"]
        pixels = restore_pixels(
            bundle,
            prepare(image, mask, pipeline, postprocess),
            device=self.device,
            precision=self._precisions.get(mode, self.precision),
            tile=self.tile,
            max_memory=self.max_memory,
            progress=progress,
        )
        if mask is not None and pipeline.get("keep_undamaged"):
            pixels = keep_undamaged(pixels, image, mask, int(pipeline.get("fill_margin", 0)))
        then = pipeline.get("then")
        if then and then != mode:
            pixels = self._restore_pixels(Image.fromarray(pixels), None, then, postprocess, progress)
        return pixels
