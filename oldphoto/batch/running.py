"""Running a planned batch: restore each job, write its files, report what happened.

:func:`run` restores :class:`~oldphoto.batch.planning.Job` s one by one through a
:class:`~oldphoto.api.Restorer`: an output that already exists is skipped, a photo that cannot
be read fails alone (its :class:`Record` says why), and every file is written atomically, so
an interruption never leaves a partial output behind. Reading the next photo and writing the
last one overlap the networks (:mod:`oldphoto.prefetch`).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from oldphoto.batch.planning import Job, will_restore
from oldphoto.deepio import DEEP_FORMATS
from oldphoto.errors import ImageError, ModeUnavailable, UsageError, WeightsError, one_line
from oldphoto.imageio import DEFAULT_MAX_PIXELS, output_format, save_image
from oldphoto.inputs import Photo, load_mask, load_photo
from oldphoto.options import check_bit_depth, check_mode, check_postprocess
from oldphoto.outputs import output_bits, provenance_xmp, side_by_side, write_restored
from oldphoto.prefetch import Loaded, WriteBehind, prefetch


class RestorerLike(Protocol):
    """What a batch needs of :class:`oldphoto.api.Restorer` (tests pass a stand-in)."""

    def restore_photo(
        self, photo: Photo, damage: Any, *, mode: str, detect_scratches: bool, postprocess: str, **options: Any,
    ) -> Any: ...


@dataclass(frozen=True)
class Settings:
    """How every photo of a batch is restored."""

    mode: str = "auto"
    postprocess: str = "default"
    detect_scratches: bool = False
    overwrite: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    save_faces: Path | None = None
    #: ``auto`` (16-bit photos stay 16-bit where the output format holds it), ``8`` or ``16``.
    bit_depth: str = "auto"
    #: Write the provenance XMP into every output (``--no-provenance``: False).
    provenance: bool = True
    #: With ``--report``: the folder for each photo's review thumbnails (records then carry the
    #: output's sha256, the thumbnails and the provenance for the report and the manifest).
    review: Path | None = None

    def __post_init__(self) -> None:
        check_mode(self.mode)
        check_postprocess(self.postprocess)
        object.__setattr__(self, "bit_depth", check_bit_depth(self.bit_depth))

    def check_jobs(self, jobs: list[Job]) -> None:
        """Refuse, as one UsageError, a plan this batch cannot write (``--bit-depth 16`` into JPEG)."""
        for job in jobs:
            output_bits(self.bit_depth, job.format, str(job.output))


@dataclass
class Record:
    """What happened to one photo: the line ``--json`` prints and the summary counts."""

    input: str
    output: str
    status: str
    mode: str | None = None
    #: The model that restored it: ``published``, ``lite`` (bundled) or the ``--weights`` folder.
    model: str | None = None
    size: list[int] | None = None
    seconds: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    faces: list[dict[str, Any]] | None = None
    #: The cluster node that restored the photo (set by cluster engines; local records omit it).
    node: str | None = None
    #: With a review report: the output file's sha256, its thumbnails and flags, and its provenance.
    sha256: str | None = None
    review: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None

    def to_json(self) -> str:
        """One line of JSON (non-ASCII file names kept readable); fields only some records have are left out when empty."""
        fields = asdict(self)
        for optional in ("node", "sha256", "review", "provenance"):
            if fields[optional] is None:
                del fields[optional]
        return json.dumps(fields, ensure_ascii=False)


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
    loaded: Loaded[Job, Photo | None] | None = None,
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
    if not will_restore(job, settings.overwrite):
        record.status = "skipped"
        return record, None
    start = time.perf_counter()
    write = None
    try:
        early = loaded.get() if loaded is not None else None
        photo = early if early is not None else load_photo(job.source, max_pixels=settings.max_pixels)
        record.warnings = list(photo.warnings)
        damage = load_mask(job.mask, photo.image.size, max_pixels=settings.max_pixels) if job.mask else None
        result = get_restorer().restore_photo(
            photo,
            damage,
            mode=settings.mode,
            detect_scratches=settings.detect_scratches or job.save_mask is not None,
            postprocess=settings.postprocess,
            bit_depth=output_bits(settings.bit_depth, job.format, str(job.output)),
            **_face_options(job, settings),
            **({"progress": progress} if progress is not None else {}),
        )
    except (WeightsError, UsageError):
        raise
    except ImageError as exc:
        record.error = str(exc)
    except ModeUnavailable as exc:  # this photo asks lite for a network it lacks (hr, faces); the others go on
        record.error = f"{job.source}: {exc}"
    except Exception as exc:  # noqa: BLE001 - one photo's failure (out of memory, a decoder bug) must not end the batch
        record.error = f"{job.source}: {one_line(exc, named=True)}"
    else:
        record.status = "restored"
        record.mode = result.mode
        record.model = getattr(result, "model", None) or None
        record.size = list(result.image.size)
        if getattr(result, "faces_enabled", False):
            record.faces = list(result.faces)
        if settings.review is not None:
            record.provenance = dict(getattr(result, "provenance", {}))
        write = _writer(job, photo, result, settings)
    record.seconds = round(time.perf_counter() - start, 3)
    return record, write


def _writer(job: Job, photo: Photo, result: Any, settings: Settings) -> Callable[[], dict[str, Any]]:
    """The writes of one restored photo: saved mask, comparison, then the main output (last).

    The output and the comparison carry the photo's XMP and, unless turned off, the provenance.
    With a review report, the thumbnails are written first and the fields they add to the
    record returned.
    """
    provenance = settings.provenance

    def write() -> dict[str, Any]:
        added: dict[str, Any] = {}
        if settings.review is not None:
            from oldphoto.batch.report import thumbnails

            review = thumbnails(settings.review, job.output, photo.image, result.image, result.mask)
            review["tiled"] = bool(getattr(result, "tiled", False))
            added["review"] = review
        xmp = provenance_xmp(result, photo, job.mask, job.format) if provenance else photo.xmp
        if job.save_mask is not None and result.detected_mask is not None:
            save_image(result.detected_mask, job.save_mask)
        if job.comparison is not None:
            fmt = output_format(job.comparison)
            deep = fmt in DEEP_FORMATS
            pair = side_by_side(photo if deep else photo.image, result if deep else result.image)
            # A JPEG comparison beside a PNG or TIFF output needs its own packet: one APP1 segment may not hold the output's.
            pair_xmp = provenance_xmp(result, photo, job.mask, fmt) if provenance and fmt != job.format else xmp
            save_image(pair, job.comparison, icc_profile=photo.icc_profile, xmp=pair_xmp)
        write_restored(result, photo, job.output, job.format, provenance=provenance, xmp=xmp)
        if settings.review is not None:
            from oldphoto.fsutil import sha256_file

            added["sha256"] = sha256_file(job.output)
        return added

    return write


def settle(record: Record, job: Job, write: Future[Any]) -> Record:
    """Wait for ``job``'s queued writes and mark ``record`` failed if they raised."""
    return _finish(record, job, write.result)


def _finish(record: Record, job: Job, write: Callable[[], Any]) -> Record:
    """Run (or wait for) ``job``'s writes and mark ``record`` failed if they raised."""
    start = time.perf_counter()
    try:
        for name, value in (write() or {}).items():
            setattr(record, name, value)
    except ImageError as exc:
        record.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a full disk or a vanished folder fails this photo alone
        record.error = f"{job.output}: {one_line(exc, named=True)}"
    else:
        return record
    finally:
        record.seconds = round(record.seconds + time.perf_counter() - start, 3)
    record.status = "failed"
    record.mode = record.model = record.size = record.faces = record.review = record.sha256 = None
    return record


def restore_job(job: Job, get_restorer: Callable[[], RestorerLike], settings: Settings) -> Record:
    """Restore one job and write its files before returning its record: one photo, start to finish.

    The same steps as :func:`run` (:func:`compute_job`, then the writes, main output last,
    each atomic) without the overlap, for engines that hand out one photo at a time.
    """
    record, write = compute_job(job, get_restorer, settings)
    return _finish(record, job, write) if write is not None else record


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
    def read_ahead(job: Job) -> Photo | None:
        return load_photo(job.source, max_pixels=settings.max_pixels) if will_restore(job, settings.overwrite) else None

    records: list[Record] = []
    queued: deque[tuple[Record, Job, Future[Any] | None]] = deque()

    def report(record: Record, job: Job, write: Future[Any] | None) -> None:
        if write is not None:
            settle(record, job, write)
        records.append(record)
        if on_record is not None:
            on_record(record)

    try:
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
    except BaseException:
        # Interrupted (Ctrl-C, a weights error): the photos whose files landed are still reported.
        while queued and (queued[0][2] is None or queued[0][2].done()):
            report(*queued.popleft())
        raise
    return records
