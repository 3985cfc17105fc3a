"""The restore options' choices and their checks: each written once, torch-free.

A value is checked where it enters the library — :class:`oldphoto.Restorer` for Python
callers, :class:`oldphoto.batch.Settings` for folder runs (which is how the CLI enters) —
by the functions here, and the layers below trust it. Each raises :class:`UsageError`,
which the CLI prints as one line with exit status 2.
"""

from __future__ import annotations

from oldphoto.weights.cards import RESTORATION_MODES
from oldphoto.errors import UsageError

#: ``auto`` picks a restoration mode per photo; ``none`` skips the global stage (faces only).
MODES = ("auto", *RESTORATION_MODES, "none")
#: ``default`` keeps the photo's exact size; ``published`` writes what the published code writes.
POSTPROCESS = ("default", "published")
#: The face generators there are weights for (``face256``, ``face512``).
FACE_SIZES = (256, 512)
#: Which model restores: ``auto`` (published when reachable, else the bundled lite), ``published``, ``lite``.
MODELS = ("auto", "published", "lite")
#: Modes that can use a damage mask; ``none`` passes a mask on to nothing, harmlessly.
_MASK_MODES = ("auto", "scratch", "hr", "none")


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`, else UsageError."""
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r} (choose {', '.join(MODES)})")
    return mode


def check_model(model: str, weights: object = None) -> str:
    """``model`` if it is one of :data:`MODELS` and fits ``weights`` (lite is the bundled folder), else UsageError."""
    if model not in MODELS:
        raise UsageError(f"unknown model {model!r} (choose {', '.join(MODELS)})")
    if model == "lite" and weights is not None:
        raise UsageError("--model lite is the bundled model; --weights names another folder (give one or the other)")
    return model


def check_postprocess(postprocess: str) -> str:
    """``postprocess`` if it is one of :data:`POSTPROCESS`, else UsageError."""
    if postprocess not in POSTPROCESS:
        raise UsageError(f"unknown postprocess {postprocess!r} (choose {', '.join(POSTPROCESS)})")
    return postprocess


def check_mask_mode(mode: str, has_mask: bool) -> None:
    """A damage mask given with the quality mode would be silently ignored: refuse it instead."""
    if has_mask and mode not in _MASK_MODES:
        raise UsageError(f"a mask needs a mode that repairs damage (auto, scratch or hr), not {mode}")


def check_face_size(face_size: int | None) -> int | None:
    """``None`` (chosen per mode) or one of :data:`FACE_SIZES`, else UsageError."""
    if face_size is not None and face_size not in FACE_SIZES:
        raise UsageError(f"face size must be 256 or 512, got {face_size}")
    return face_size


def check_face_strength(strength: float) -> float:
    """A blend between 0 (original faces) and 1 (restored faces), else UsageError."""
    if not 0.0 <= strength <= 1.0:
        raise UsageError(f"face strength must be between 0 and 1, got {strength}")
    return strength


#: ``auto`` keeps a 16-bit photo 16-bit where the output format holds it; ``8`` and ``16`` force a depth.
BIT_DEPTHS = ("auto", "8", "16")


def check_bit_depth(bit_depth: str | int) -> str:
    """``bit_depth`` as one of :data:`BIT_DEPTHS` (8 and 16 may be given as numbers), else UsageError."""
    value = str(bit_depth).strip().lower()
    if value not in BIT_DEPTHS:
        raise UsageError(f"unknown bit depth {bit_depth!r} (choose {', '.join(BIT_DEPTHS)})")
    return value
