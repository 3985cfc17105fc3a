"""Planning a restore run: which photo goes to which output, before any image is opened.

:func:`plan` turns ``IN``/``OUT`` (a file or a folder each) into :class:`Job` s: it walks the
folder (hidden names and the output folders skipped), picks each output's format, matches
masks to photos by name, and refuses, as a :class:`UsageError`, any plan that would write over
an input. :func:`will_restore` then says whether a job still needs restoring (its output is missing),
which is what makes re-running an interrupted command resume it, and :func:`check_writable`
finds an output folder that cannot be written before the first photo is restored. Nothing
here reads pixels or needs torch, so any engine can plan — :mod:`oldphoto.batch.running` here, others elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from oldphoto.errors import UsageError, one_line
from oldphoto.fsutil import probe_writable
from oldphoto.imageio import READABLE_EXTENSIONS, choose_output_format, format_for_extension, normalise_format, output_format


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
    if src.is_dir() and save_mask_path is not None and not _looks_like_folder(save_mask_path):
        raise UsageError(f"{save_mask_path}: --save-mask needs a folder for a folder of photos, and this is a file")
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
        save_mask=_saved_mask(save_mask, src),
        error=error,
    )


def _saved_mask(save_mask: Path | None, src: Path) -> Path | None:
    """Where one photo's detected mask goes: ``save_mask`` itself when it names an image file (one
    photo, as ``--comparison`` may), else a PNG named like the photo in that folder."""
    if save_mask is None:
        return None
    if _looks_like_folder(save_mask):
        return save_mask / f"{src.stem}.png"
    if output_format(save_mask) not in ("PNG", "TIFF"):  # a lossy mask would no longer be 0 and 255
        raise UsageError(f"{save_mask}: --save-mask writes a mask losslessly; name a .png or .tif file, or a folder")
    return save_mask


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


def needs_work(jobs: Iterable[Job], overwrite: bool) -> bool:
    """True when at least one job will run the networks (so the caller should build a Restorer)."""
    return any(will_restore(job, overwrite) for job in jobs)


def will_restore(job: Job, overwrite: bool) -> bool:
    """True when the job is well-formed and its output is missing (or to be redone)."""
    return job.error is None and (overwrite or not job.output.exists())


def check_writable(jobs: Iterable[Job], overwrite: bool, also: Iterable[Path] = ()) -> None:
    """Raise UsageError naming a folder that an output of the run cannot be written to (or created in).

    Every folder the jobs still to restore write into (outputs, comparisons, saved masks)
    and ``also`` (``--save-faces``) is tried with a real temporary file, so a read-only
    mount or a file standing where a folder should be is found before hours of work, not
    after. Nothing is left behind.
    """
    folders = {p.parent for job in jobs if will_restore(job, overwrite) for p in (job.output, job.comparison, job.save_mask) if p}
    for folder in sorted(folders | set(also) if folders else ()):
        try:
            probe_writable(folder)
        except OSError as exc:
            reason = exc.strerror or one_line(exc)
            raise UsageError(f"{folder}: outputs cannot be written there ({reason}); nothing was restored") from None
