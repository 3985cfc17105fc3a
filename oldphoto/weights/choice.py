"""Which model restores: the published weights, or the ``lite`` model bundled in the package.

``--model auto`` (the default) uses the published weights when they are given (``--weights``),
cached or downloadable, and otherwise the bundled ``lite`` model, saying so in one line: a
fresh machine without network can still restore. The choice is made once per run, before
the first photo, and every record names the model that restored it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from oldphoto.errors import ModeUnavailable, UsageError, WeightsError, WeightsUnreachable, one_line
from oldphoto.options import check_model

#: The models bundled as lite: quality and scratch mode and the scratch detector (no hr mode, no faces).
LITE_MODELS = ("quality", "scratch", "detector")
#: The ``--mode`` values a lite run can be asked for (``auto`` picks scratch, never hr, for a damaged photo).
LITE_RUN_MODES = ("auto", "none", "quality", "scratch")
#: The end of every notice of a fallback to lite.
_FALLBACK = "restoring with the bundled lite model (no hr mode, no faces)"


@dataclass(frozen=True)
class ModelChoice:
    """The model a run uses: ``name`` for records, ``weights`` the folder to load from (None: cache/Hub).

    ``notice`` is the one line to show when lite stands in; ``offline`` marks the expected case
    (nothing cached and no network), which a command line need tell only once (:func:`first_time`).
    """

    name: str
    weights: Path | None = None
    notice: str | None = None
    offline: bool = False

    @property
    def is_lite(self) -> bool:
        return self.name == "lite"

    def has(self, network: str) -> bool:
        """Whether this model has ``network`` (a mode, or ``detector``): lite only its :data:`LITE_MODELS`."""
        return not self.is_lite or network in LITE_MODELS

    def folder_for(self, network: str) -> Path | None:
        """Where model ``network`` (a mode, or ``detector``) loads from; for lite, checked first.

        Lite has only :data:`LITE_MODELS`: anything else is :class:`ModeUnavailable` (a photo's
        failure, not the run's), and each file must match the sha256 in its card.
        """
        if not self.is_lite:
            return self.weights
        if not self.has(network):
            what = f"{network} mode" if network == "hr" else f"the {network} model"
            raise ModeUnavailable(f"{what} needs the published weights; the bundled lite model has {', '.join(LITE_MODELS)} only")
        return verify_lite(self.weights, network)


def lite_folder() -> Path:
    """The folder inside the installed package holding the bundled lite models (``NAME.{safetensors,json}``)."""
    return Path(str(resources.files("oldphoto.weights").joinpath("lite")))


def verify_lite(folder: Path | None = None, name: str = "quality") -> Path:
    """Check bundled model ``name`` against the sha256 its card records; return the folder.

    A damaged install fails here with one line instead of restoring with altered weights.
    """
    from oldphoto.fsutil import sha256_file

    folder = folder or lite_folder()
    weights, card = folder / f"{name}.safetensors", folder / f"{name}.json"
    if not weights.is_file() or not card.is_file():
        raise WeightsError(f"{folder}: the bundled lite model is missing from this install (reinstall oldphoto)")
    expected = json.loads(card.read_text(encoding="utf-8")).get("bundled", {}).get("sha256")
    if expected != sha256_file(weights):
        raise WeightsError(f"{weights}: does not match the sha256 in {card.name}; reinstall oldphoto")
    return folder


def lite_status() -> dict[str, Any]:
    """What ``weights list`` and ``info`` show of the bundled models: present, all verified, size, path."""
    folder = lite_folder()
    files = [folder / f"{name}.{ext}" for name in LITE_MODELS for ext in ("safetensors", "json")]
    size = sum(p.stat().st_size for p in files if p.is_file())
    try:
        for name in LITE_MODELS:
            verify_lite(folder, name)
        verified = True
    except WeightsError:
        verified = False
    return {"present": size > 0, "verified": verified, "size": size, "path": str(folder), "models": list(LITE_MODELS)}


def choose_model(
    model: str,
    *,
    weights_dir: Path | str | None = None,
    repo: str | None = None,
    revision: str | None = None,
    mode: str = "auto",
    detect: bool = False,
    masked: bool = False,
    progress: bool = True,
) -> ModelChoice:
    """Decide the run's model: the published weights when ``auto`` can resolve (or download) them, else lite.

    ``published`` defers to the usual lazy resolution (its errors stay as they were);
    ``--weights DIR`` means that folder, named by its path in the records. ``auto`` probes
    only runs lite could do instead (auto, quality or scratch mode): it fetches the published
    model such a run loads first anyway (the detector when detecting, scratch for masks or
    scratch mode, else quality). An hr or faces-only run stays with the published weights.
    """
    check_model(model, weights_dir)
    if model == "lite":
        check_lite_mode(mode)
        return ModelChoice("lite", lite_folder())
    if weights_dir is not None:
        return ModelChoice(str(weights_dir), Path(weights_dir))
    if model == "published":
        return ModelChoice("published")
    if mode == "none" or mode not in LITE_RUN_MODES:  # faces only, or hr: nothing lite could do instead
        return ModelChoice("published")
    from oldphoto.weights.resolve import resolve_weights

    detects = detect or (mode == "scratch" and not masked)  # scratch mode without masks finds its own
    first = "detector" if detects else "scratch" if masked or mode == "scratch" else "quality"
    try:  # only the model the run loads first: the rest follow lazily, so nothing unused is fetched
        resolve_weights(first, repo=repo, revision=revision, progress=progress)
    except WeightsUnreachable as exc:
        notice = f"published weights unavailable (not downloaded yet, and {exc.why}; see 'oldphoto weights download --help'); {_FALLBACK}"
        return ModelChoice("lite", lite_folder(), notice, offline=True)
    except WeightsError as exc:  # something is wrong with a source or the cache: worth saying every time
        reason = one_line(exc).split(". Get it with", 1)[0]
        return ModelChoice("lite", lite_folder(), f"published weights unavailable ({reason}); {_FALLBACK}")
    return ModelChoice("published")


def first_time(key: str) -> bool:
    """True the first time ``key`` is asked with this weights cache (and recorded there), False after.

    For what a person needs to be told once, not on every run (the offline fallback to lite).
    True also when the record cannot be written (a read-only cache), so nothing goes unsaid.
    """
    from oldphoto.weights.cache import cache_root

    marker = cache_root() / ".told" / key
    if marker.exists():
        return False
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass
    return True


def check_lite_mode(mode: str) -> None:
    """UsageError when a run asks the lite model for a mode it does not have (hr)."""
    if mode not in LITE_RUN_MODES:
        raise UsageError(f"the bundled lite model has no {mode} mode (it restores {', '.join(LITE_RUN_MODES[2:])}); use --model published")
