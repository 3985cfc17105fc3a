"""``oldphoto train STAGE --clean DIR --out DIR`` or ``oldphoto train --config run.toml``: train the restoration networks.

Stages, in the published order: ``vae-a`` (real old photos from ``--old`` and synthetic ones
made from ``--clean``), ``vae-b`` (clean photos), then ``mapping`` (or ``mapping-scratch``)
between the two frozen VAEs (``--vae-a`` and ``--vae-b`` are the first two runs' ``--out``
folders); ``detector`` is independent. The output folders are ``--weights`` folders for
``oldphoto restore`` (``quality``, ``scratch`` and ``detector`` checkpoints).

Every option but ``--config``, ``--threads`` and ``--progress`` is a field of
:class:`oldphoto.training.stages.config.TrainConfig`, made into an option here from the field's
type and default and its help in ``OPTIONS``; a run file given with ``--config`` (TOML, or a
card that recorded a run) sets the same fields, and options given on the line override it.
"""

from __future__ import annotations

import inspect
import shlex
import sys
import typing
from pathlib import Path
from typing import Any, Optional

import typer

from oldphoto.cli.common import fail, say


def _parse_losses(items: Optional[list[str]]) -> dict[str, float]:
    from oldphoto.errors import UsageError

    weights: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            weights[name.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--loss takes NAME=WEIGHT (e.g. gan=0 to switch the GAN off), got {item!r}") from None
    return weights


class _Bar:
    """The progress bar (rich) a run's step reports draw: steps, elapsed, ETA, loss and the last validation."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, report: Any) -> None:
        if self.bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            from oldphoto.cli.common import console

            self.bar = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
                TimeRemainingColumn(), TextColumn("{task.fields[losses]}"), console=console, transient=False,
            )
            self.task = self.bar.add_task("train", total=report.total, completed=report.step, losses="")
            self.bar.start()
        if report.losses:
            shown = {"loss": report.losses["total"], **{f"val_{k}": v for k, v in (report.val or {}).items() if k in ("psnr", "f1")}}
            self.bar.update(self.task, completed=report.step, losses=" ".join(f"{k} {v:.3g}" for k, v in shown.items()))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _option(name: str, kind: Any, default: Any) -> inspect.Parameter:
    """The Typer parameter of TrainConfig field ``name``: default None (unset), so a run file's value stays unless given."""
    from oldphoto.training.stages.config import OPTIONS

    opt = OPTIONS[name]
    shown = "" if default is None or default == [] or default == {} or isinstance(default, bool) else f" Default {default}."
    if name == "stage":
        info = typer.Argument(None, metavar="STAGE", help=opt.help + " Optional with --config.", show_default=False)
        return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=info, annotation=Optional[str])
    flag = "--" + name.replace("_", "-")
    args = [t for t in typing.get_args(kind) if t is not type(None)]
    base = args[0] if args and typing.get_origin(kind) not in (list, dict) else kind
    metavar = None
    if name == "weights":
        annotation, decls, metavar = Optional[list[str]], opt.flags, "<name=w>"
    elif typing.get_origin(base) is list:
        annotation, decls, metavar = Optional[list[Path]], (flag, *opt.flags), "<folder>"
    elif base is bool:
        annotation, decls = Optional[bool], (f"{flag}/--no-{flag[2:]}", *opt.flags)
    else:
        annotation, decls = Optional[base], (flag, *opt.flags)
    limits = {k: getattr(opt, k) for k in ("min", "max") if getattr(opt, k) is not None}
    info = typer.Option(None, *decls, metavar=metavar, help=opt.help + shown, show_default=False, **limits)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)


def _parameters() -> list[inspect.Parameter]:
    from dataclasses import MISSING, fields

    from oldphoto.training.stages.config import TrainConfig, field_types

    types = field_types()
    defaults = {f.name: (f.default if f.default is not MISSING else f.default_factory() if f.default_factory is not MISSING else None)
                for f in fields(TrainConfig)}
    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [_option(name, kind, defaults[name]) for name, kind in types.items()]
    params[1:1] = [
        inspect.Parameter("config", keyword, annotation=Optional[Path], default=typer.Option(
            None, "--config", help="Run file: TOML with the options below by name (crop = 96; a weights table for --loss), "
            "or a card whose recorded training config is replayed. Options given on the line override it.", show_default=False)),
    ]
    params += [
        inspect.Parameter("threads", keyword, annotation=Optional[int], default=typer.Option(
            None, "--threads", min=1, help="CPU threads for torch.")),
        inspect.Parameter("progress", keyword, annotation=bool, default=typer.Option(
            True, "--progress/--no-progress", help="Show a progress bar with ETA and losses.")),
    ]
    return params


def train(**options: Any) -> None:
    """Train one stage of the restoration networks (the published triplet domain translation)."""
    from oldphoto.errors import OldPhotoError, UsageError

    config, threads, progress = options.pop("config"), options.pop("threads"), options.pop("progress")
    try:
        from oldphoto.training.stages.config import config_values, make_config

        values = config_values(config) if config is not None else {}
        loss = options.pop("weights")
        given = {k: v for k, v in options.items() if v is not None}
        if loss:
            given["weights"] = {**values.get("weights", {}), **_parse_losses(loss)}
        cfg = make_config({**values, **given}, f"{config}" if config is not None else "the command line")
        cfg.loss_weights()  # unknown loss names fail before any data is read (and before torch is imported)

        import torch

        from oldphoto.devices import select_device, slow_precision_reason
        from oldphoto.training.loop import run

        if threads:
            torch.set_num_threads(threads)
        slow = slow_precision_reason(cfg.precision, select_device(cfg.device))
        if slow:
            say("yellow", "warning", slow)
        command = "oldphoto train " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None
        bar = _Bar() if progress else None
        try:
            result = run(cfg, progress=bar, say=lambda m: say("yellow", "note", m), command=command)
        finally:
            if bar is not None:
                bar.close()
    except UsageError as exc:
        fail(str(exc), 2)
    except OldPhotoError as exc:
        fail(str(exc))
    scores = f"; validation {result.val}" if result.val else ""
    state = "stopped early" if result.stopped_early else "done"
    say("green", state, f"step {result.step} in {result.seconds / 60:.1f} min; checkpoint {result.output}{scores}")


train.__signature__ = inspect.Signature(_parameters())  # type: ignore[attr-defined]
