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

from oldphoto.deepio import restored_image
from oldphoto.provenance import restorer_info
from oldphoto.inputs import ImageInput, Photo, load_mask, load_photo
from oldphoto.options import (
    check_bit_depth,
    check_face_size,
    check_face_strength,
    check_mask_mode,
    check_mode,
    check_model,
    check_postprocess,
)

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
    #: A 16-bit restoration's samples (uint16, H×W grey or H×W×3 RGB); ``image`` is then their
    #: 8-bit rendering. None when the photo was restored to 8 bits.
    deep: np.ndarray | None = None
    #: How it was made, for the output's provenance (see :mod:`oldphoto.provenance`): model,
    #: networks and their weights' sha256, mode, mask, precision, device, bits.
    provenance: dict[str, Any] = field(default_factory=dict)
    #: Whether the networks ran tile by tile (a large scan in bounded memory).
    tiled: bool = False


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
        self._used: list[str] = []  # the models the photo being restored used, for its provenance
        self._tiled = False  # whether it was restored tile by tile
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
        if name not in self._used:
            self._used.append(name)
        return self._models[name]

    def detect(self, image: ImageInput, *, postprocess: str = "default") -> Image.Image:
        """Return the detected damage mask ("L", 255 = damaged) at the photo's size."""
        check_postprocess(postprocess)
        photo = load_photo(image)
        with self._lock:
            return self._detect(photo.image, postprocess)

    def _detect(self, image: Image.Image, postprocess: str) -> Image.Image:
        import torch

        from oldphoto.detection import damage_probability, mask_from_probability
        from oldphoto.devices import autocast

        meta, bundle = self.model("detector")
        with torch.inference_mode(), autocast(self.device, self._precisions.get("detector", self.precision)):
            prob = damage_probability(bundle["unet"], image, meta["pipeline"], postprocess, self.device)
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
        """Restore one photo and return it (same size as the input unless ``postprocess='published'``).

        An 8-bit PIL image; a 16-bit photo's full depth is in :meth:`restore_detailed`'s
        ``deep`` and in the files :meth:`restore_file` writes.
        """
        return self.restore_detailed(
            image, mask, mode=mode, detect_scratches=detect_scratches, postprocess=postprocess
        ).image

    def restore_file(
        self,
        source: str | Path,
        output: str | Path,
        mask: ImageInput | None = None,
        *,
        mode: str = "auto",
        detect_scratches: bool = False,
        postprocess: str = "default",
        bit_depth: str = "auto",
        provenance: bool = True,
    ) -> RestoreResult:
        """Restore the photo file ``source`` into ``output`` as ``oldphoto restore`` would.

        The format follows ``output``'s extension; EXIF, ICC and XMP are kept, a 16-bit photo
        stays 16-bit where the format holds it (``bit_depth``), and the provenance is written
        into the file unless ``provenance=False``. Returns the result.
        """
        from oldphoto.imageio import output_format
        from oldphoto.outputs import output_bits, write_restored

        fmt = output_format(output)
        bits = output_bits(check_bit_depth(bit_depth), fmt, str(output))
        photo = load_photo(source)
        result = self.restore_detailed(
            photo, mask, mode=mode, detect_scratches=detect_scratches, postprocess=postprocess, bit_depth=bits
        )
        write_restored(result, photo, Path(output), fmt, provenance=provenance)
        return result

    def restore_detailed(
        self,
        image: ImageInput | Photo,
        mask: ImageInput | None = None,
        *,
        mode: str = "auto",
        detect_scratches: bool = False,
        postprocess: str = "default",
        bit_depth: str = "auto",
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
        ``bit_depth``: ``auto`` restores a 16-bit photo to 16 bits (``deep``) and an 8-bit one to
        8; ``8`` or ``16`` ask for that depth. ``image`` may be a :class:`~oldphoto.inputs.Photo`
        already loaded (it is used as it is).
        """
        check_mode(mode)
        check_postprocess(postprocess)
        check_mask_mode(mode, mask is not None)
        bit_depth = check_bit_depth(bit_depth)
        start = time.perf_counter()
        photo = image if isinstance(image, Photo) else load_photo(image)
        damage = load_mask(mask, photo.image.size) if mask is not None else None
        return self.restore_photo(
            photo, damage, mode=mode, detect_scratches=detect_scratches, postprocess=postprocess, bit_depth=bit_depth,
            progress=progress, save_faces=save_faces, save_prefix=save_prefix, start=start,
        )

    def restore_photo(
        self,
        photo: Photo,
        damage: Image.Image | None,
        *,
        mode: str,
        detect_scratches: bool,
        postprocess: str,
        bit_depth: str = "auto",
        progress: Callable[[int, int], None] | None = None,
        save_faces: str | Path | None = None,
        save_prefix: str = "face",
        start: float | None = None,
    ) -> RestoreResult:
        """:meth:`restore_detailed` for a loaded photo and mask (``load_photo``/``load_mask``) and checked options.

        What a folder run calls: its :class:`~oldphoto.batch.Settings` checked the options
        once, and it loaded the photo and mask itself (reading ahead), so nothing is done twice.
        """
        start = time.perf_counter() if start is None else start
        bits = 16 if bit_depth == "16" or (bit_depth == "auto" and photo.bits == 16) else 8
        rgb = photo.image.convert("RGB")
        with self._lock:
            self._used, self._tiled = [], False
            self.choose(mode, detect_scratches, damage is not None)
            for notice in self.notices():
                warnings.warn(notice, stacklevel=3)
            given = damage is not None
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
            source = photo.rgb_pixels(bits)
            if mode == "none":
                pixels = source
            else:
                pixels = self._restore_pixels(source, damage if mode != "quality" else None, mode, postprocess, progress)
            faces_on = self.faces_enabled(mode)
            records: list[dict[str, Any]] = []
            if faces_on:
                pixels, records = self._enhance_faces(pixels, mode, save_faces, save_prefix)
            # The networks that shaped this photo: a face generator that found no face to restore did not.
            face_model = self.face_model_name(mode)
            used = [n for n in self._used if n != face_model or any(r.get("enhanced") for r in records)]
        keep_mask = mode not in ("quality", "none")
        out, deep = restored_image(pixels, photo.is_grey)
        model = self.choice.name if self.choice is not None and mode != "none" else ""
        return RestoreResult(
            image=out,
            mode=mode,
            mask=damage if keep_mask else None,
            detected_mask=detected,
            seconds=time.perf_counter() - start,
            warnings=photo.warnings,
            faces_enabled=faces_on,
            faces=records,
            model=model,
            deep=deep,
            tiled=self._tiled,
            provenance=restorer_info(
                self, model, used, mode,
                "given" if given and keep_mask else "detected" if detected is not None and keep_mask else "none", bits,
            ),
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
        self, image: np.ndarray, mode: str, save_dir: str | Path | None, prefix: str
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
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
        image: np.ndarray,
        mask: Image.Image | None,
        mode: str,
        postprocess: str,
        progress: Callable[[int, int], None] | None,
    ) -> np.ndarray:
        """Run mode ``mode``'s networks on the photo; then what its card's pipeline adds (lite scratch:
        keep the undamaged pixels, then restore the result in its ``then`` mode)."""
        from oldphoto.ensemble import averaged, ensemble_bytes, ensemble_size
        from oldphoto.pipeline import keep_undamaged, levels_after, prepare
        from oldphoto.tiling import Plan, photo_bytes, plan, restore_pixels

        meta, bundle = self.model(mode)
        pipeline = meta["pipeline"]
        views = ensemble_size(pipeline)
        held = photo_bytes(image.shape[0], image.shape[1], masked=mask is not None, fill=pipeline.get("hole_fill", "white"))
        if image.dtype == np.uint16:
            held *= 2  # the photo's own buffers hold 16-bit samples
        held += ensemble_bytes(image.shape[0], image.shape[1], views, image.dtype == np.uint16)
        precision = self._precisions.get(mode, self.precision)

        chosen: Plan | None = None  # every view (a flip) has the same shape: planned once, for all of them

        def restore_view(view: np.ndarray, view_mask: Image.Image | None, report: Callable[[int, int], None] | None) -> np.ndarray:
            nonlocal chosen
            prepared = prepare(view, view_mask, pipeline, postprocess)
            if chosen is None:
                chosen = plan(bundle, *prepared.x.shape[-2:], self.device, self.tile, self.max_memory,
                              precision=precision, reserved=held, masked=prepared.mask is not None)
                self._tiled = self._tiled or chosen.tiled
            return restore_pixels(bundle, prepared, device=self.device, precision=precision, tile=self.tile,
                                  max_memory=self.max_memory, progress=report, reserved=held, chosen=chosen)

        pixels = averaged(restore_view, image, mask, views, progress)  # one view unless the card asks for more
        pixels = levels_after(pixels, pipeline)
        if mask is not None and pipeline.get("keep_undamaged"):
            pixels = keep_undamaged(pixels, image, mask, int(pipeline.get("fill_margin", 0)))
        then = pipeline.get("then")
        if then and then != mode:
            pixels = self._restore_pixels(pixels, None, then, postprocess, progress)
        return pixels

