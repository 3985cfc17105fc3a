"""Published face-generator checkpoints -> plain weights: fold spectral norm once, at import.

The published generator wraps ``conv_0``, ``conv_1`` and ``conv_s`` of every block in
spectral norm, so its state dict holds ``weight_orig``, ``weight_u`` and ``weight_v`` instead
of ``weight``. In eval mode the weight used is ``weight_orig / σ`` with ``σ = u·(W v)`` (no
power iteration), so the fold is exact and our network needs no spectral-norm machinery.
The key and shape checks against the network are done by ``oldphoto.importer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oldphoto.errors import WeightsError, short_list

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
