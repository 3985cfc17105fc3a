"""Restoring many photos: pair inputs with outputs, skip what is done, go on past bad files.

A run is two steps. :func:`plan` turns ``IN``/``OUT`` (a file or a folder each) into jobs
without opening any image, and refuses, as a usage error, any plan that would write over an
input. :func:`run` restores the jobs one by one through a :class:`~oldphoto.api.Restorer`:
an output that already exists is skipped (so re-running an interrupted command resumes
it), a photo that cannot be read fails alone, and every file is written atomically, so an
interruption never leaves a partial output behind.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from oldphoto.errors import ImageError, UsageError, WeightsError
from oldphoto.imageio import (
    DEFAULT_MAX_PIXELS,
    LoadedImage,
    READABLE_EXTENSIONS,
    choose_output_format,
    format_for_extension,
    load_image,
    load_mask,
    normalise_format,
    output_format,
    save_image,
)
from oldphoto.prefetch import Loaded, WriteBehind, prefetch

STATUSES = ("restored", "skipped", "failed")


class RestorerLike(Protocol):
    """What a batch needs of :class:`oldphoto.api.Restorer` (tests pass a stand-in)."""

    def restore_detailed(
        self, image: Any, mask: Any = None, *, mode: str = ..., detect_scratches: bool = ..., postprocess: str = ...,
        **options: Any,
    ) -> Any: ...


@dataclass(frozen=True)
class Job:
    """One photo to restore and every file it produces.

    ``error`` is set when the plan already knows this photo cannot be done (two photos
    would share an output, its mask is ambiguous); the batch reports it and goes on.
    """

    source: Path
    output: Path
    format: str
    mask: Path | None = None
    comparison: Path | None = None
    save_mask: Path | None = None
    error: str | None = None


@dataclass(frozen=True)
class Settings:
    """How every photo of a batch is restored."""

    mode: str = "auto"
    postprocess: str = "default"
    detect_scratches: bool = False
    overwrite: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    save_faces: Path | None = None


@dataclass
class Record:
    """What happened to one photo: the line ``--json`` prints and the summary counts."""

    input: str
    output: str
    status: str
    mode: str | None = None
    size: list[int] | None = None
    seconds: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    faces: list[dict[str, Any]] | None = None

    def to_json(self) -> str:
        """One line of JSON (non-ASCII file names kept readable)."""
        return json.dumps(asdict(self), ensure_ascii=False)


def _looks_like_folder(path: Path) -> bool:
    """An existing folder, a path written with a trailing slash, or a name without an extension."""
    return path.is_dir() or str(path).endswith(("/", os.sep)) or (not path.exists() and not path.suffix)


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _is_photo(path: Path) -> bool:
    return path.suffix.lower() in READABLE_EXTENSIONS and not path.name.startswith(".")


def _walk(root: Path, recursive: bool, exclude: Iterable[Path]) -> list[Path]:
    """Photo files under ``root`` (relative paths, sorted), skipping hidden names and ``exclude`` folders."""
    skip = {p.resolve() for p in exclude}
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if recursive and not d.startswith(".") and (here / d).resolve() not in skip)
        found.extend((here / f).relative_to(root) for f in files if _is_photo(here / f) and (here / f).is_file())
    return sorted(found)


class _MaskFolder:
    """Masks in a folder, matched to photos by stem: same sub-folder first, then the top level."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.by_key: dict[tuple[Path, str], list[Path]] = {}
        for rel in _walk(root, True, ()):
            self.by_key.setdefault((rel.parent, rel.stem), []).append(root / rel)

    def find(self, rel: Path) -> tuple[Path | None, str | None]:
        """``(mask, None)``, ``(None, None)`` when there is none, or ``(None, reason)`` when ambiguous."""
        for key in ((rel.parent, rel.stem), (Path("."), rel.stem)):
            candidates = self.by_key.get(key, [])
            if len(candidates) == 1:
                return candidates[0], None
            if len(candidates) > 1:
                names = ", ".join(p.name for p in candidates)
                return None, f"{rel}: several masks match it in {self.root} ({names}); keep one"
        return None, None


def plan(
    src: Path | str,
    dest: Path | str,
    *,
    recursive: bool = False,
    format: str | None = None,
    mask: Path | str | None = None,
    comparison: Path | str | None = None,
    save_mask: Path | str | None = None,
) -> list[Job]:
    """Pair each photo of ``src`` (a file or a folder) with its outputs under ``dest``.

    Folder in, folder out keeps the relative tree; the output format is ``format``, else the
    input's own, else PNG for formats we cannot write. Raises :class:`UsageError` for
    impossible requests, including any output that would land on an input.
    """
    src, dest = Path(src), Path(dest)
    mask_path = Path(mask) if mask is not None else None
    comparison_path = Path(comparison) if comparison is not None else None
    save_mask_path = Path(save_mask) if save_mask is not None else None
    if format is not None:
        normalise_format(format)
    if not src.exists():
        raise UsageError(f"{src}: no such file or folder")
    if mask_path is not None and not mask_path.exists():
        raise UsageError(f"{mask_path}: no such mask file or folder")
    if save_mask_path is not None and save_mask_path.exists() and not save_mask_path.is_dir():
        raise UsageError(f"{save_mask_path}: --save-mask needs a folder, and this is a file")
    if src.is_dir():
        jobs = _plan_folder(src, dest, recursive, format, mask_path, comparison_path, save_mask_path)
        masks = [mask_path / m for m in _walk(mask_path, True, ())] if mask_path is not None else []
    else:
        jobs = [_plan_file(src, dest, format, mask_path, comparison_path, save_mask_path)]
        masks = [mask_path] if mask_path is not None and mask_path.is_file() else []
    _refuse_overwriting_inputs(jobs, [job.source for job in jobs], masks)
    _refuse_shared_outputs(jobs)
    return jobs


def _refuse_shared_outputs(jobs: list[Job]) -> None:
    """Raise UsageError when an output, a comparison and a saved mask would be the same file."""
    roles: dict[Path, str] = {}
    for job in jobs:
        for role, written in (("output", job.output), ("comparison", job.comparison), ("saved mask", job.save_mask)):
            if written is None:
                continue
            other = roles.setdefault(written.resolve(), role)
            if other != role:
                raise UsageError(f"{written}: would be written both as the {other} and as the {role}; use separate folders")


def _plan_file(
    src: Path, dest: Path, format: str | None, mask: Path | None, comparison: Path | None, save_mask: Path | None
) -> Job:
    if _looks_like_folder(dest):
        fmt, ext = choose_output_format(format_for_extension(src.suffix), format)
        output = dest / (src.stem + ext)
    else:
        output, fmt = dest, output_format(dest)
        if format is not None and normalise_format(format) != fmt:
            raise UsageError(f"{dest}: --format {format} disagrees with the output's extension; change one of them")
    error = None
    if mask is not None and mask.is_dir():
        mask, error = _MaskFolder(mask).find(Path(src.name))
    if comparison is not None:
        if _looks_like_folder(comparison):
            comparison = comparison / output.name
        else:
            output_format(comparison)
    return Job(
        source=src,
        output=output,
        format=fmt,
        mask=mask,
        comparison=comparison,
        save_mask=save_mask / f"{src.stem}.png" if save_mask is not None else None,
        error=error,
    )


def _plan_folder(
    src: Path,
    dest: Path,
    recursive: bool,
    format: str | None,
    mask: Path | None,
    comparison: Path | None,
    save_mask: Path | None,
) -> list[Job]:
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest}: IN is a folder, so OUT must be a folder, and this is a file")
    if _same_file(src, dest):
        raise UsageError(f"{dest}: OUT must be a different folder from IN (outputs would mix with the photos)")
    if mask is not None and not mask.is_dir():
        raise UsageError(f"{mask}: IN is a folder, so --mask must be a folder of masks named like the photos")
    if mask is not None and _same_file(mask, src):
        raise UsageError(f"{mask}: the mask folder must not be the photo folder")
    if comparison is not None and comparison.exists() and not comparison.is_dir():
        raise UsageError(f"{comparison}: IN is a folder, so --comparison must be a folder, and this is a file")
    extras = [p for p in (dest, mask, comparison, save_mask) if p is not None]
    photos = _walk(src, recursive, extras)
    if not photos:
        hint = "" if recursive else " (add --recursive to look in sub-folders)"
        raise UsageError(f"{src}: no photos found{hint}")
    masks = _MaskFolder(mask) if mask is not None else None
    claimed: dict[Path, Path] = {}
    jobs = []
    for rel in photos:
        fmt, ext = choose_output_format(format_for_extension(rel.suffix), format)
        out_rel = rel.with_suffix(ext)
        error = None
        if out_rel in claimed:
            error = f"{src / rel}: its output {dest / out_rel} is also the output of {src / claimed[out_rel]}"
        claimed.setdefault(out_rel, rel)
        mask_file = None
        if masks is not None:
            mask_file, mask_error = masks.find(rel)
            error = error or mask_error
        jobs.append(
            Job(
                source=src / rel,
                output=dest / out_rel,
                format=fmt,
                mask=mask_file,
                comparison=comparison / out_rel if comparison is not None else None,
                save_mask=save_mask / rel.with_suffix(".png") if save_mask is not None else None,
                error=error,
            )
        )
    return jobs


def _refuse_overwriting_inputs(jobs: list[Job], photos: list[Path], masks: list[Path]) -> None:
    """Raise UsageError if any file a job writes is one of the inputs (photo or mask)."""
    inputs = photos + masks
    resolved = {p.resolve(): p for p in inputs}
    kinds = {p: "photo" for p in photos} | {p: "mask" for p in masks}
    for job in jobs:
        for written in (job.output, job.comparison, job.save_mask):
            if written is None:
                continue
            hit = resolved.get(written.resolve())
            if hit is None:
                hit = next((p for p in inputs if _same_file(p, written)), None) if written.exists() else None
            if hit is not None:
                which = "" if str(hit) == str(written) else f" {hit}"
                raise UsageError(f"{written}: refusing to write over the input {kinds[hit]}{which}")


def side_by_side(before: Image.Image, after: Image.Image) -> Image.Image:
    """The photo as read (left) beside its restoration (right), at the restoration's height."""
    mode = "L" if before.mode == after.mode == "L" else "RGB"
    if before.size != after.size:
        w = max(1, round(before.width * after.height / before.height))
        before = before.resize((w, after.height), Image.Resampling.LANCZOS)
    canvas = Image.new(mode, (before.width + after.width, after.height))
    canvas.paste(before.convert(mode), (0, 0))
    canvas.paste(after.convert(mode), (before.width, 0))
    return canvas


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _face_options(job: Job, settings: Settings) -> dict[str, Any]:
    """Where this photo's face crops go (``--save-faces``), named after the photo."""
    if settings.save_faces is None:
        return {}
    return {"save_faces": settings.save_faces, "save_prefix": job.source.stem}


def compute_job(
    job: Job,
    get_restorer: Callable[[], RestorerLike],
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
    loaded: Loaded[Job, LoadedImage | None] | None = None,
) -> tuple[Record, Callable[[], None] | None]:
    """Restore one job's photo; return its record and the function that writes its files.

    The record says ``restored`` once the networks are done; :func:`settle` turns it into a
    failure if writing then fails. The writer saves the main output last, so its presence
    means the mask and comparison files were written too, which is what makes skipping it
    on a re-run safe. Image problems become a failed record (and no writer); weights and
    usage problems propagate, since they would fail every photo the same way.
    """
    record = Record(input=str(job.source), output=str(job.output), status="failed")
    if job.error is not None:
        record.error = job.error
        return record, None
    if job.output.exists() and not settings.overwrite:
        record.status = "skipped"
        return record, None
    start = time.perf_counter()
    write = None
    try:
        early = loaded.get() if loaded is not None else None
        photo = early if early is not None else load_image(job.source, max_pixels=settings.max_pixels)
        record.warnings = list(photo.warnings)
        damage = load_mask(job.mask, photo.image.size, max_pixels=settings.max_pixels) if job.mask else None
        result = get_restorer().restore_detailed(
            photo.image,
            damage,
            mode=settings.mode,
            detect_scratches=settings.detect_scratches or job.save_mask is not None,
            postprocess=settings.postprocess,
            **_face_options(job, settings),
            **({"progress": progress} if progress is not None else {}),
        )
        record.warnings += [w for w in getattr(result, "warnings", []) if w not in record.warnings]
    except (WeightsError, UsageError):
        raise
    except ImageError as exc:
        record.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - one photo's failure (out of memory, a decoder bug) must not end the batch
        record.error = f"{job.source}: {_one_line(exc)}"
    else:
        record.status = "restored"
        record.mode = result.mode
        record.size = list(result.image.size)
        if getattr(result, "faces_enabled", False):
            record.faces = list(result.faces)
        write = _writer(job, photo, result)
    record.seconds = round(time.perf_counter() - start, 3)
    return record, write


def _writer(job: Job, photo: LoadedImage, result: Any) -> Callable[[], None]:
    """The writes of one restored photo: saved mask, comparison, then the main output (last)."""

    def write() -> None:
        if job.save_mask is not None and result.detected_mask is not None:
            save_image(result.detected_mask, job.save_mask)
        if job.comparison is not None:
            save_image(side_by_side(photo.image, result.image), job.comparison, icc_profile=photo.icc_profile)
        save_image(result.image, job.output, format=job.format, exif=photo.exif, icc_profile=photo.icc_profile)

    return write


def settle(record: Record, job: Job, write: Future[Any]) -> Record:
    """Wait for ``job``'s queued writes and mark ``record`` failed if they raised."""
    start = time.perf_counter()
    try:
        write.result()
    except ImageError as exc:
        record.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a full disk or a vanished folder fails this photo alone
        record.error = f"{job.output}: {_one_line(exc)}"
    else:
        return record
    finally:
        record.seconds = round(record.seconds + time.perf_counter() - start, 3)
    record.status = "failed"
    record.mode = record.size = record.faces = None
    return record


def run(
    jobs: list[Job],
    get_restorer: Callable[[], RestorerLike],
    settings: Settings,
    *,
    on_start: Callable[[Job], None] | None = None,
    on_record: Callable[[Record], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[Record]:
    """Restore ``jobs`` in order and return one record each.

    ``get_restorer`` is called only when a photo actually needs restoring, so a resumed run
    whose outputs all exist never loads a model. :class:`WeightsError` and
    :class:`UsageError` end the run: they would fail every remaining photo the same way.
    ``on_progress(done, total)`` reports the tiles of each photo as they finish.

    Reading and writing overlap the networks: the next photo is decoded on a background
    thread while this one is restored, and a finished photo's files are encoded and saved
    on another while the next one is restored. Records (and ``on_record``) come in job
    order, each once its files are on disk.
    """
    def read_ahead(job: Job) -> LoadedImage | None:
        return load_image(job.source, max_pixels=settings.max_pixels) if _will_restore(job, settings.overwrite) else None

    records: list[Record] = []
    queued: deque[tuple[Record, Job, Future[Any] | None]] = deque()

    def report(record: Record, job: Job, write: Future[Any] | None) -> None:
        if write is not None:
            settle(record, job, write)
        records.append(record)
        if on_record is not None:
            on_record(record)

    with WriteBehind(depth=1) as writer:
        for item in prefetch(jobs, read_ahead):
            job = item.source
            if on_start is not None:
                on_start(job)
            record, write = compute_job(job, get_restorer, settings, on_progress, item)
            queued.append((record, job, writer.submit(write, source=job) if write is not None else None))
            # Report every record whose files are written; keep at most one photo's writes pending.
            while queued and (len(queued) > 1 or queued[0][2] is None or queued[0][2].done()):
                report(*queued.popleft())
        while queued:
            report(*queued.popleft())
    return records


def needs_work(jobs: Iterable[Job], overwrite: bool) -> bool:
    """True when at least one job will run the networks (so the caller should build a Restorer)."""
    return any(_will_restore(job, overwrite) for job in jobs)


def _will_restore(job: Job, overwrite: bool) -> bool:
    """True when the job is well-formed and its output is missing (or to be redone)."""
    return job.error is None and (overwrite or not job.output.exists())
