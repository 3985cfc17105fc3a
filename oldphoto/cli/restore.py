"""``oldphoto restore IN OUT``: one photo or a folder of them, through :class:`oldphoto.Restorer`.

The command only parses options and reports; pairing files, skipping, and restoring live in
:mod:`oldphoto.batch`, and every photo goes through the one Restorer built for the run. Option
values are checked where they enter the library (:mod:`oldphoto.options`, via
:class:`~oldphoto.batch.Settings` and :class:`~oldphoto.Restorer`); this module reports their
:class:`~oldphoto.errors.UsageError` as one line with exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from oldphoto.cli.common import console, escape, fail, say

if TYPE_CHECKING:
    from collections.abc import Callable

    from oldphoto.batch import Job, Record, Settings
    from oldphoto.engines.ray import Cluster

    #: ``run_batch(jobs, settings, on_start=..., on_record=..., on_progress=...)``: one engine's run.
    RunBatch = Callable[..., list[Record]]

def restore(
    ctx: typer.Context,
    src: Path = typer.Argument(..., metavar="IN", help="A photo, or a folder of photos.", show_default=False),
    dest: Path = typer.Argument(
        ..., metavar="OUT", help="Output file (format from its extension), or folder (created; keeps the input names).", show_default=False
    ),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also restore photos in sub-folders, keeping the tree."),
    format: Optional[str] = typer.Option(
        None, "--format", help="Output format for folders: png, jpg, tif, webp or bmp. Default: the input's format; PNG for GIF."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo photos whose output exists (by default they are skipped, so a re-run resumes)."),
    mask: Optional[Path] = typer.Option(
        None, "--mask", help="Damage mask (white = damaged, any size), or a folder of masks named like the photos. Implies a scratch mode."
    ),
    detect_scratches: bool = typer.Option(False, "--detect-scratches", help="Find scratches and folds with the detector."),
    save_mask: Optional[Path] = typer.Option(
        None, "--save-mask", help="Folder to write each detected mask to, or for one photo a .png or .tif file (implies "
        "--detect-scratches); edit one and pass it back with --mask."
    ),
    mode: str = typer.Option("auto", "--mode", help="auto, quality, scratch, hr or none (faces only). auto: scratch when damage is given or detected (hr for large photos), else quality."),
    postprocess: str = typer.Option("default", "--postprocess", help="default (exact input size) or published (the published code's rounded size)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32, bf16 or fp16."),
    tile: str = typer.Option("auto", "--tile", help="Tile size in pixels for large scans, or auto."),
    max_memory: str = typer.Option("auto", "--max-memory", help="Memory budget for tiling (e.g. 4GB), or auto."),
    model: str = typer.Option(
        "auto", "--model", help="auto (published weights when given, cached or downloadable, else the bundled lite model), published or lite."
    ),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Folder of oldphoto checkpoints (from 'weights import-official'); default: download."),
    repo: Optional[str] = typer.Option(None, "--repo", help="Hugging Face repo to try first for weights (a fork or mirror; also OLDPHOTO_REPO)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch, tag or commit of the first repo tried; a commit (see 'weights list') makes runs reproducible."),
    max_pixels: Optional[int] = typer.Option(
        None, "--max-pixels", min=0, help="Refuse photos larger than this many pixels (decompression-bomb guard). Default 250000000; 0 for no limit."
    ),
    comparison: Optional[Path] = typer.Option(None, "--comparison", help="Also write a before/after image here (a file, or a folder for many photos)."),
    json_lines: bool = typer.Option(False, "--json", help="Print one JSON record per photo on stdout instead of progress and a summary."),
    faces: Optional[bool] = typer.Option(
        None, "--faces/--no-faces", help="Enhance faces (needs the faces extra, oldphoto[faces]). Default: on when the extra and face weights are present."
    ),
    face_size: Optional[int] = typer.Option(None, "--face-size", help="Face generator: 256 or 512 (default: 512 with --mode hr, else 256)."),
    face_strength: float = typer.Option(1.0, "--face-strength", help="Blend of restored and original faces; 1 is the published behaviour."),
    save_faces: Optional[Path] = typer.Option(None, "--save-faces", help="Folder for each face's aligned, restored and compare crops."),
    bit_depth: str = typer.Option(
        "auto", "--bit-depth", help="auto (16-bit PNG/TIFF photos stay 16-bit; others 8), 8 or 16 (PNG and TIFF outputs only)."
    ),
    provenance: bool = typer.Option(
        True, "--provenance/--no-provenance", help="Write how each photo was restored into its file as XMP (tool, model, weights' sha256, original)."
    ),
    report: Optional[Path] = typer.Option(
        None, "--report", help="Write a review page here (e.g. report.html; thumbnails in report_files/, run manifest report.json), kept current as the run goes."
    ),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (actors on a Ray cluster; needs the ray extra, oldphoto[ray])."),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", help="With --engine ray: 'auto' (the running cluster) or its address. Default: a private Ray on this machine."
    ),
    workers: Optional[int] = typer.Option(None, "--workers", help="With --engine ray: actors to start (default: one per GPU, else one per --cpus-per-worker CPUs)."),
    gpus_per_worker: Optional[float] = typer.Option(None, "--gpus-per-worker", help="With --engine ray: GPUs per actor (default 1 on a cluster with GPUs, else 0)."),
    cpus_per_worker: Optional[float] = typer.Option(None, "--cpus-per-worker", help="With --engine ray: CPUs per actor (default 1)."),
) -> None:
    """Restore old photos: a single file, or a whole folder (re-run to resume).

    Exit status: 0 when every photo was restored or skipped, 1 when any failed, 2 for usage errors.

    Examples:

    \b
      oldphoto restore old.jpg restored.jpg --comparison before-after.jpg
      oldphoto restore scans/ restored/ --recursive --save-mask masks/
      oldphoto restore torn.png fixed.png --mask torn-mask.png
      oldphoto restore /shared/scans/ /shared/out/ --engine ray --ray-address auto
    """
    from oldphoto import batch
    from oldphoto.errors import OldPhotoError, UsageError
    from oldphoto.imageio import DEFAULT_MAX_PIXELS
    from oldphoto.options import check_mask_mode

    restorer_options = dict(
        weights=weights, device=device, precision=precision, tile=tile, max_memory=max_memory, repo=repo, revision=revision,
        faces=faces if save_faces is None else (faces if faces is not None else True),
        face_size=face_size, face_strength=face_strength, model=model,
    )
    try:
        settings = batch.Settings(
            mode=mode,
            postprocess=postprocess,
            detect_scratches=detect_scratches,
            overwrite=overwrite,
            max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else (max_pixels or None),
            save_faces=save_faces,
            bit_depth=bit_depth,
            provenance=provenance,
            review=_review_folder(report, src),
        )
        check_mask_mode(mode, mask is not None)
        cluster = _cluster(engine, ray_address, workers, gpus_per_worker, cpus_per_worker)
        _check_options(restorer_options, local=cluster is None)
        if cluster is not None:
            from oldphoto.engines.ray import import_ray

            import_ray()  # a missing extra is reported before any work
        jobs = batch.plan(src, dest, recursive=recursive, format=format, mask=mask, comparison=comparison, save_mask=save_mask)
        settings.check_jobs(jobs)
        if mask is not None and mask.is_file():
            _check_mask(mask, settings.max_pixels)
        batch.check_writable(jobs, overwrite, [p for p in (save_faces, report.parent if report else None) if p is not None])
    except UsageError as exc:
        fail(str(exc), code=2)
    except OldPhotoError as exc:  # --faces without the faces extra, --engine ray without Ray
        fail(str(exc))
    single = not src.is_dir()
    try:
        if batch.needs_work(jobs, overwrite):
            restorer_options["model"] = _choose(restorer_options, settings, detect_scratches or save_mask is not None, mask is not None)
        if cluster is not None:
            from oldphoto.engines import ray as ray_engine

            def run_batch(jobs: list[Job], settings: Settings, **report: Any) -> list[Record]:
                report.pop("on_progress", None)  # tiles of one photo stay on its worker
                return ray_engine.run(jobs, settings, restorer_options, cluster, **report)
        else:
            restorer = None
            if batch.needs_work(jobs, overwrite):
                from oldphoto.api import Restorer

                restorer = Restorer(**restorer_options)
                for notice in restorer.notices():
                    say("yellow", "warning", notice)

            def run_batch(jobs: list[Job], settings: Settings, **report: Any) -> list[Record]:
                return batch.run(jobs, lambda: restorer, settings, **report)

        if report is not None:
            run_batch = _reporting(run_batch, report, settings, restorer_options, model, _command_line(ctx))
        records = _run(jobs, run_batch, settings, json_lines=json_lines, single=single)
    except UsageError as exc:
        fail(str(exc), code=2)
    except OldPhotoError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; finished photos are kept, run the same command again to resume", code=130)
    if any(r.status == "failed" for r in records):
        raise typer.Exit(1)


def _review_folder(report: Path | None, src: Path) -> Path | None:
    """The thumbnails folder of ``--report`` (None without one); the report must be an .html file outside the photos."""
    if report is None:
        return None
    from oldphoto.batch.report import files_folder
    from oldphoto.errors import UsageError

    if report.suffix.lower() not in (".html", ".htm") or report.is_dir():
        raise UsageError(f"{report}: --report needs an .html file name (its thumbnails go beside it)")
    if src.is_dir() and report.resolve().is_relative_to(src.resolve()):
        raise UsageError(f"{report}: put the report outside the photo folder (its thumbnails would be taken for photos)")
    return files_folder(report)


def _command_line(ctx: typer.Context) -> list[str]:
    """This command as typed, rebuilt from the options given on the command line (for the run manifest)."""
    words = ["oldphoto", "restore"]
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name) if param.name else None
        if source is None or source.name != "COMMANDLINE":
            continue
        value = ctx.params[param.name]
        if param.param_type_name == "argument":
            words.append(str(value))
        elif getattr(param, "is_flag", False):
            words.append(param.opts[0] if value or not param.secondary_opts else param.secondary_opts[0])
        else:
            words += [param.opts[0], str(value)]
    return words


def _reporting(
    run_batch: RunBatch, path: Path, settings: Settings, options: dict[str, Any], requested: str, command: list[str]
) -> RunBatch:
    """``run_batch`` that also keeps the review report and run manifest at ``path`` current, interrupted or not."""
    from dataclasses import asdict

    from oldphoto.batch.report import Report

    chosen = {k: v for k, v in options.items() if k != "model"} | {"model": requested, "model_used": options["model"]}
    review = Report(path, command=command, settings={**asdict(settings), **chosen}, requested_model=requested)

    def run(jobs: list[Job], settings: Settings, **hooks: Any) -> list[Record]:
        told = hooks.get("on_record")

        def on_record(record: Record) -> None:
            review.add(record)
            if told is not None:
                told(record)

        try:
            records = run_batch(jobs, settings, **{**hooks, "on_record": on_record})
        except BaseException:
            review.close(interrupted=True)
            raise
        review.close()
        return records

    return run


def _check_options(options: dict[str, Any], *, local: bool) -> None:
    """Every option the Restorer takes, checked before any work (a download, Ray's start, the first photo).

    The same checks, with the same functions, that building the Restorer makes; with
    ``--engine ray`` it is built on the workers, so the device is only read here, not looked for.
    """
    from oldphoto.devices import parse_precision, select_device, select_precision
    from oldphoto.options import check_face_size, check_face_strength, check_model
    from oldphoto.tiling import parse_memory, parse_tile

    check_model(options["model"], options["weights"])
    parse_tile(options["tile"])
    parse_memory(options["max_memory"])
    check_face_size(options["face_size"])
    check_face_strength(options["face_strength"])
    precision = parse_precision(options["precision"])
    if not local:
        _read_device(options["device"])
        return
    select_precision(precision, select_device(options["device"]))
    if options["faces"]:
        from oldphoto.faces.availability import landmark_model_path, require_dlib

        require_dlib()
        landmark_model_path()


def _read_device(spec: str) -> None:
    """UsageError unless ``spec`` names a device (whether this machine has it is the workers' business)."""
    import torch

    from oldphoto.errors import UsageError

    name = spec.strip().lower()
    try:
        device = torch.device(name) if name != "auto" else None
    except RuntimeError:
        raise UsageError(f"unknown device {spec!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device is not None and device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"unsupported device {spec!r} (use auto, cpu, cuda, cuda:N or mps)")


def _check_mask(mask: Path, max_pixels: int | None) -> None:
    """A mask file given for one photo is part of the command: one that cannot be read is a usage error."""
    from oldphoto.errors import ImageError, UsageError
    from oldphoto.imageio import read_image

    try:
        read_image(mask, max_pixels=max_pixels, what="mask")
    except ImageError as exc:
        raise UsageError(f"--mask {exc}") from None


def _choose(options: dict[str, Any], settings: Settings, detect: bool, masked: bool) -> str:
    """Make the run's model choice once, before the first photo, print its notice; return it for every worker.

    The expected offline fallback to lite is told the first time only (every record, the
    one-photo line and the summary still name the model); any other reason, every time.
    """
    from oldphoto.weights.choice import choose_model, first_time

    choice = choose_model(
        options["model"], weights_dir=options["weights"], repo=options["repo"], revision=options["revision"],
        mode=settings.mode, detect=detect, masked=masked,
    )
    if choice.notice and (not choice.offline or first_time("offline-fallback-to-lite")):
        say("yellow", "note", choice.notice)
    return "lite" if choice.is_lite else "published"


def _cluster(
    engine: str, address: str | None, workers: int | None, gpus: float | None, cpus: float | None
) -> Cluster | None:
    """The Ray cluster settings for ``--engine ray``, None for the local engine; UsageError for a mix-up."""
    if engine not in ("local", "ray"):
        from oldphoto.errors import UsageError

        raise UsageError(f"--engine must be local or ray, not {engine!r}")
    if engine == "local":
        given = [name for name, value in (("--ray-address", address), ("--workers", workers), ("--gpus-per-worker", gpus),
                                          ("--cpus-per-worker", cpus)) if value is not None]
        if given:
            from oldphoto.errors import UsageError

            raise UsageError(f"{', '.join(given)} only apply with --engine ray")
        return None
    from oldphoto.engines.ray import Cluster

    return Cluster(address=address, workers=workers, gpus_per_worker=gpus, cpus_per_worker=1.0 if cpus is None else cpus)


def _run(jobs: list[Job], run_batch: RunBatch, settings: Settings, *, json_lines: bool, single: bool) -> list[Record]:
    """Run the batch with the report the user asked for: JSON lines, one line, or progress + summary."""
    if json_lines:
        return run_batch(jobs, settings, on_record=lambda r: typer.echo(r.to_json()))
    if single and not console.is_terminal:
        records = run_batch(jobs, settings)
        _report_single(records[0])
        return records
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("restoring", total=len(jobs), visible=not single)
        tiles = progress.add_task("tiles", total=1, visible=False)

        def started(job: Job) -> None:
            progress.update(task, description=f"restoring {job.source.name}")
            progress.update(tiles, completed=0, total=1, visible=False)

        def tiles_done(done: int, total: int) -> None:
            # Each photo's own bar: its convolutions, or its tiles when it is cut into tiles.
            progress.update(tiles, completed=done, total=total, visible=total > 1, description="  this photo")

        def finished(record: Record) -> None:
            if not single:
                for warning in record.warnings:
                    progress.console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
            progress.advance(task)

        records = run_batch(jobs, settings, on_start=started, on_record=finished, on_progress=tiles_done)
    if single:
        _report_single(records[0])
        return records
    _report_summary(records)
    return records


def _report_single(record: Record) -> None:
    for warning in record.warnings:
        say("yellow", "warning", warning)
    if record.status == "failed":
        say("red", "error", record.error or "")
    elif record.status == "skipped":
        console.print(f"skipped {record.input}: {record.output} exists (use --overwrite to redo it)", highlight=False, soft_wrap=True)
    else:
        console.print(
            f"restored {record.input} -> {record.output} ({record.mode} mode, {_model_text(record)}{_faces_text(record)}, {record.seconds:.1f} s)",
            highlight=False,
            soft_wrap=True,
        )


def _model_text(record: Record) -> str:
    """``lite model, `` / ``published model, `` / ``weights DIR, `` for the one-photo report."""
    if not record.model:
        return ""
    return f"{record.model} model, " if record.model in ("lite", "published") else f"weights {record.model}, "


def _faces_text(record: Record) -> str:
    """``faces off`` or ``N faces enhanced`` for the run summary."""
    if record.faces is None:
        return "faces off"
    return f"{sum(bool(f.get('enhanced')) for f in record.faces)} of {len(record.faces)} faces enhanced"


def _report_summary(records: list[Record]) -> None:
    """A table of counts, then each failure with its reason."""
    from rich.table import Table

    counts = {status: sum(r.status == status for r in records) for status in ("restored", "skipped", "failed")}
    seconds = sum(r.seconds for r in records)
    summary = Table(title="oldphoto restore", show_header=True, title_justify="left")
    summary.add_column("restored", justify="right", style="green")
    summary.add_column("skipped", justify="right")
    summary.add_column("failed", justify="right", style="red")
    summary.add_column("time", justify="right")
    summary.add_row(str(counts["restored"]), str(counts["skipped"]), str(counts["failed"]), f"{seconds:.1f} s")
    console.print(summary)
    restored = [r for r in records if r.status == "restored"]
    if restored:
        with_faces = [r for r in restored if r.faces is not None]
        found = sum(len(r.faces or []) for r in with_faces)
        models = ", ".join(sorted({_model_text(r).removesuffix(", ") for r in restored if r.model}))
        console.print(
            (f"{models}; " if models else "") + f"faces: {'on' if with_faces else 'off'}" + (f" ({found} found)" if with_faces else ""),
            highlight=False,
        )
    failed = [r for r in records if r.status == "failed"]
    if failed:
        table = Table(title="failed", show_header=True, title_justify="left")
        table.add_column("photo", overflow="fold")
        table.add_column("reason", overflow="fold")
        for r in failed:
            reason = r.error or ""
            table.add_row(escape(r.input), escape(reason.removeprefix(f"{r.input}: ")))
        console.print(table)
