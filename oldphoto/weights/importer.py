"""Convert the published ``.pth`` checkpoints into oldphoto's safetensors format.

This is the only place a pickle is read, and only with ``torch.load(weights_only=True)``,
which refuses any pickled object that is not a tensor or a plain container. Conversion is
pure dict work driven by the model cards: select each network's keys by prefix, strip
container wrappers and ``module.`` prefixes, check every key and shape against the network
built from the card's config, and refuse with the offending keys named. Every model is
validated before anything is written, so a failed import leaves the destination untouched.
The published face generator's spectral norm is folded here too (:func:`fold_spectral_norm`).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oldphoto.weights.cards import card_names, load_card
from oldphoto.weights.checkpoint import save_checkpoint
from oldphoto.errors import WeightsError, short_list
from oldphoto.fsutil import sha256_file

#: Entries that published training scripts wrap a state dict in.
CONTAINER_KEYS = ("model_state", "state_dict", "model", "net_G", "params_ema", "params")


@dataclass
class ImportReport:
    """What an import wrote, what it could not import and why, and warnings to show."""

    imported: dict[str, Path] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def checkpoint_roots(src: Path | str) -> list[Path]:
    """Folders a published file's relative path may start from, most specific first.

    Accepts the folder holding ``restoration/`` and ``detection/``, the folder holding
    ``checkpoints/``, or the published repository itself (``Global/checkpoints/`` for the
    global stage, ``Face_Enhancement/`` beside ``Global/``); the face files are also looked
    for above a ``Global/checkpoints`` folder given directly.
    """
    src = Path(src)
    if not src.is_dir():
        raise WeightsError(f"{src}: not a folder")
    candidates = [src, src / "checkpoints", src / "Global" / "checkpoints", src.parent, src.parent.parent]
    roots: list[Path] = []
    for c in candidates:
        if c.is_dir() and c.resolve() not in [r.resolve() for r in roots]:
            roots.append(c)
    return roots


def _locate(rel: str, roots: list[Path]) -> Path | None:
    return next((r / rel for r in roots if (r / rel).is_file()), None)


def _is_tensor_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def read_published(path: Path, container_key: str | None = None) -> dict[str, Any]:
    """Safely load a published checkpoint and return its flat state dict (name -> tensor)."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "disallowed object"
        raise WeightsError(
            f"{path}: refused: the pickle holds objects other than tensors, which could run code ({first})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({exc})") from None
    keys = [container_key] if container_key else []
    while isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        inner = next((k for k in (*keys, *CONTAINER_KEYS) if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            break
        obj = obj[inner]
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if len(state) != len(obj):
        odd = sorted(k for k, v in obj.items() if not isinstance(v, torch.Tensor))
        raise WeightsError(f"{path}: entries that are not tensors: {', '.join(map(str, odd[:8]))}")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def convert_network(spec: Mapping[str, Any], state: Mapping[str, Any], source: str, strict: bool) -> tuple[dict[str, Any], list[str]]:
    """Map one network's keys out of a published state dict and check them against the network.

    Returns the network's tensors (our key names) and warnings for unexpected keys; raises
    WeightsError naming missing or mis-shaped keys (and unexpected ones when ``strict``).
    """
    from oldphoto.models import build_network

    prefix = spec.get("source_prefix", "")
    ignores = tuple(spec.get("source_ignores", ()))
    expected = build_network(spec["arch"], spec["config"]).state_dict()
    picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    transform = spec.get("transform")
    if transform:
        picked = _apply_transform(transform, picked, source)
    missing = [k for k in expected if k not in picked and not k.endswith("num_batches_tracked")]
    if missing:
        raise WeightsError(f"{source}: missing keys: {short_list(prefix + k for k in missing)}")
    wrong = [
        f"{prefix}{k} {tuple(picked[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in picked and tuple(picked[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise WeightsError(f"{source}: wrong shapes: {short_list(wrong, 4)}")
    unexpected = [prefix + k for k in picked if k not in expected]
    unexpected += [k for k in state if not k.startswith(prefix) and not k.startswith(ignores)]
    warnings = []
    if unexpected:
        message = f"{source}: unexpected keys: {short_list(unexpected)}"
        if strict:
            raise WeightsError(message + " (refused under --strict)")
        warnings.append(message + " (ignored)")
    out = {}
    for k, ref in expected.items():
        tensor = picked.get(k, ref)
        out[k] = tensor.to(ref.dtype).contiguous()
    return out, warnings


def _apply_transform(name: str, state: dict[str, Any], source: str) -> dict[str, Any]:
    """Run a card-named state transform (e.g. folding spectral norm for the face generator)."""
    if name == "fold_spectral_norm":
        return fold_spectral_norm(state, source=source)
    raise WeightsError(f"{source}: unknown conversion step {name!r} in the model card")


def _convert_model(
    card: Mapping[str, Any], locate: Callable[[str], Path], strict: bool, cache: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    tensors: dict[str, Any] = {}
    warnings: list[str] = []
    sources: dict[str, str] = {}
    for net, spec in card["networks"].items():
        rel = spec["source"]
        if rel not in cache:
            cache[rel] = read_published(locate(rel), spec.get("container_key"))
        if rel not in sources:
            sources[rel] = sha256_file(locate(rel))
        part, warn = convert_network(spec, cache[rel], rel, strict)
        tensors.update({f"{net}.{k}": v for k, v in part.items()})
        warnings += [w for w in warn if w not in warnings]
    meta = {
        "networks": {net: {"arch": s["arch"], "config": s["config"]} for net, s in card["networks"].items()},
        "pipeline": card.get("pipeline", {}),
        "license": card.get("license"),
        "origin": card.get("origin"),
        "sources": [{"file": rel, "sha256": sha} for rel, sha in sources.items()],
    }
    return tensors, meta, warnings


def import_official(
    src: Path | str,
    dest: Path | str,
    *,
    strict: bool = False,
    models: Iterable[str] | None = None,
    cards: Mapping[str, Mapping[str, Any]] | None = None,
) -> ImportReport:
    """Import every model whose published files are present under ``src`` into ``dest``.

    ``cards`` overrides the shipped model cards (tests use tiny ones). Models whose files
    are absent are reported in ``missing``; a malformed or unsafe file aborts the whole
    import before anything is written.
    """
    roots = checkpoint_roots(src)
    cards = dict(cards) if cards is not None else {n: load_card(n) for n in card_names()}
    names = list(models) if models is not None else list(cards)
    report = ImportReport()
    converted: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    cache: dict[str, dict[str, Any]] = {}
    for name in names:
        if name not in cards:
            raise WeightsError(f"unknown model {name!r} (known: {', '.join(cards)})")
        card = cards[name]
        absent = sorted({s["source"] for s in card["networks"].values() if _locate(s["source"], roots) is None})
        if absent:
            report.missing[name] = "needs " + ", ".join(absent) + f" (not found under {roots[0]})"
            continue
        tensors, meta, warnings = _convert_model(card, lambda rel: _locate(rel, roots) or roots[0] / rel, strict, cache)
        converted[name] = (tensors, meta)
        report.warnings += [w for w in warnings if w not in report.warnings]
    for name, (tensors, meta) in converted.items():
        report.imported[name] = save_checkpoint(dest, name, tensors, meta)
    return report


def import_files(
    name: str, card: Mapping[str, Any], files: Mapping[str, Path], dest: Path | str, *, strict: bool = False
) -> tuple[Path, list[str]]:
    """Convert model ``name`` from published files given by their card path; write it into ``dest``.

    The download path uses this: the files sit wherever the Hub client cached them. Returns the
    written metadata path and the warnings; a malformed or unsafe file raises before anything is written.
    """
    absent = sorted({s["source"] for s in card["networks"].values()} - set(files))
    if absent:
        raise WeightsError(f"{name}: cannot convert without {', '.join(absent)}")
    tensors, meta, warnings = _convert_model(card, lambda rel: Path(files[rel]), strict, {})
    return save_checkpoint(dest, name, tensors, meta), warnings


# ---- the face generator: fold spectral norm once, at import --------------------------------
#
# The published generator wraps ``conv_0``, ``conv_1`` and ``conv_s`` of every block in
# spectral norm, so its state dict holds ``weight_orig``, ``weight_u`` and ``weight_v`` instead
# of ``weight``. In eval mode the weight used is ``weight_orig / σ`` with ``σ = u·(W v)`` (no
# power iteration), so the fold is exact and our network needs no spectral-norm machinery.

_SUFFIXES = ("weight_orig", "weight_u", "weight_v")


def spectral_sigma(weight_orig: Any, u: Any, v: Any) -> Any:
    """Return ``σ = u·(W v)`` in float64, W being ``weight_orig`` flattened to (out, rest)."""
    w = weight_orig.detach().double().reshape(weight_orig.shape[0], -1)
    return u.detach().double() @ (w @ v.detach().double())


def fold_spectral_norm(state: Mapping[str, Any], *, source: str = "checkpoint") -> dict[str, Any]:
    """Replace every spectral-norm triplet in ``state`` by the plain ``weight`` it stands for.

    Raises WeightsError naming the keys when a triplet is incomplete, mis-shaped, collides
    with a plain ``weight``, or has a σ that is not a positive finite number.
    """
    out: dict[str, Any] = {}
    stems: set[str] = set()
    for key, value in state.items():
        stem, _, last = key.rpartition(".")
        if last in _SUFFIXES:
            stems.add(stem)
        else:
            out[key] = value
    incomplete = [f"{s}.{x}" for s in sorted(stems) for x in _SUFFIXES if f"{s}.{x}" not in state]
    if incomplete:
        raise WeightsError(f"{source}: incomplete spectral-norm entries, missing {short_list(incomplete, 6)}")
    clashes = [f"{s}.weight" for s in stems if f"{s}.weight" in out]
    if clashes:
        raise WeightsError(f"{source}: both plain and spectral-norm weights for {short_list(clashes, 6)}")
    for stem in sorted(stems):
        w, u, v = (state[f"{stem}.{x}"] for x in _SUFFIXES)
        if w.dim() < 2 or tuple(u.shape) != (w.shape[0],) or tuple(v.shape) != (w[0].numel(),):
            raise WeightsError(
                f"{source}: spectral-norm shapes do not fit at {stem}: weight_orig {tuple(w.shape)}, "
                f"weight_u {tuple(u.shape)}, weight_v {tuple(v.shape)}"
            )
        sigma = float(spectral_sigma(w, u, v))
        if not sigma > 0 or sigma == float("inf"):
            raise WeightsError(f"{source}: spectral norm of {stem} is {sigma!r}, not a positive number")
        out[f"{stem}.weight"] = (w.detach().double() / sigma).to(w.dtype)
    return out
