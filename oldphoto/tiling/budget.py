"""Deciding whether and how to tile: parse ``--tile``/``--max-memory``, estimate, plan.

Estimates come from a network's structure (channels and resolution of every convolution,
residual skip and global block): floats per image pixel at the peak, times the image's or
the tile's area. They are deliberately generous. With a CPU budget given, an untiled run
the structural estimate rejects is also measured without data (:mod:`.dryrun`), so a photo
that fits is not tiled.

``max_memory`` on CUDA is the GPU memory the networks may use (full-size maps then live in
host RAM, on disk beyond half of what is available). On the CPU it is a promise about the
process: its peak RSS stays within what it holds before the photo (Python, torch, the
loaded models) plus ``max_memory`` plus :data:`FIXED_OVERHEAD`. So the plan counts the
photo's own buffers (:func:`photo_bytes`: the decoded photo, the network input, the result,
a mask and its hole fill), the allocator's slack over the live tensors (:func:`heap_factor`),
the tiles, the global steps and the full-size maps kept in RAM; maps beyond that go to
temporary files (in ``TMPDIR``, unlinked at once, so they vanish with the process).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
from torch import nn

from oldphoto.errors import UsageError, human_bytes
from oldphoto.models import restoration_steps
from oldphoto.networks.blocks import ResBlock
from oldphoto.networks.steps import Global

_FLOAT = 4
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
#: Smallest tile side accepted (image pixels); tiles are multiples of 4 so every resolution
#: of the networks (full, 1/2, 1/4) cuts into whole pixels.
MIN_TILE = 16
#: Tile sides the automatic planner tries, largest first.
AUTO_TILES = (4096, 3072, 2048, 1536, 1024, 768, 512, 384, 256, 192, 128, 96, 64)
#: Largest tile the automatic planner picks on the CPU (larger tiles are no faster there).
CPU_MAX_AUTO_TILE = 2048
#: Halo added to each side of a tile in the estimate (image pixels; the 7×7 convs need 3).
_HALO = 8
#: Share of the free memory the ``auto`` budget takes, leaving room for everything else.
_AUTO_SHARE = 0.75
#: Peak RSS over the peak of live tensor bytes on the CPU. With glibc's own settings freed
#: maps go back to the OS and the RSS follows the tensors (measured 1.12× for lite quality
#: at 1 MP, the rest kernel workspaces); with :func:`oldphoto.devices.keep_freed_memory`
#: (faster: a freed map's warm pages are reused) the heap fragments and its peak reached
#: 1.5–2.2× (lite quality, 1 and 4 MP, fp32 and bf16). An explicit CPU budget is divided by it.
_HEAP_FACTOR = {False: 1.15, True: 2.2}


#: The same for a tiled run: its maps are allocated once a pass and its tiles are small, so
#: it fragments less (6-MP lite restores: planned for 0.72 GB, peaked 0.73 GB above their
#: base; planned for 1.55 GB, 2.17 GB).
_TILED_SLACK = 1.6


def heap_factor() -> float:
    """How much more than its live tensors the process's peak RSS may reach (see ``_HEAP_FACTOR``)."""
    from oldphoto.devices import allocator_tuned

    return _HEAP_FACTOR[allocator_tuned()]


def parse_memory(value: str | int | None) -> int | None:
    """``auto``/None → None; bytes as an int or ``"4GB"``, ``"512MiB"``, ``"1.5g"`` (binary units)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        nbytes = value
    else:
        text = str(value).strip().lower()
        if text == "auto":
            return None
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", text)
        if match is None:
            raise UsageError(f"--max-memory {value!r}: give a size such as 4GB, 512MB or auto")
        nbytes = int(float(match.group(1)) * _UNITS[match.group(2)])
    if nbytes <= 0:
        raise UsageError(f"--max-memory {value!r}: must be more than zero")
    return nbytes


def parse_tile(value: str | int | None) -> int | None:
    """``auto``/None → None (planner decides); ``off``/0 → 0 (never tile); N → N rounded down to a multiple of 4."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text == "auto":
        return None
    if text in ("off", "none", "0"):
        return 0
    if not text.isdigit():
        raise UsageError(f"--tile {value!r}: give a tile side in pixels (at least {MIN_TILE}), auto or off")
    tile = int(text)
    if tile < MIN_TILE:
        raise UsageError(f"--tile {value!r}: tiles must be at least {MIN_TILE} pixels")
    return tile - tile % 4


def free_memory(device: torch.device) -> int:
    """Bytes free now: the GPU's (``torch.cuda.mem_get_info``) or the host's (``MemAvailable``)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return free_host_memory()


def free_host_memory() -> int:
    """Available host memory from ``/proc/meminfo`` (Linux), else free physical pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


@dataclass(frozen=True)
class Profile:
    """Floats per image pixel a network bundle holds at its peaks, and its weight bytes.

    ``whole`` is the largest global step that must run on the device, ``movable`` the largest
    that may run in host memory (both whole-map, so they do not shrink with the tile).
    """

    conv: float
    skip: float
    whole: float
    movable: float
    weights: int


def profile(bundle: nn.ModuleDict) -> Profile:
    """Walk a restoration bundle's steps in order, tracking the resolution."""
    conv = skip = whole = movable = 0.0
    scale = 1.0
    for step in restoration_steps(bundle):
        if isinstance(step, Global) and not step.pointwise:
            if step.movable:
                movable = max(movable, step.floats / scale**2)
            else:
                whole = max(whole, step.floats / scale**2)
        for mod in step.modules():
            if isinstance(mod, nn.ConvTranspose2d):
                out_scale = scale / mod.stride[0]
            elif isinstance(mod, nn.Conv2d):
                out_scale = scale * mod.stride[0]
            elif isinstance(mod, ResBlock):
                skip = max(skip, mod.channels / scale**2)
                continue
            else:
                continue
            conv = max(conv, mod.in_channels / scale**2 + mod.out_channels / out_scale**2)
            scale = out_scale
    weights = sum(p.numel() * p.element_size() for p in bundle.parameters())
    return Profile(conv=conv, skip=skip, whole=whole, movable=movable, weights=weights)


def untiled_bytes(prof: Profile, height: int, width: int) -> int:
    """Estimated peak bytes of running the whole image at once."""
    area = height * width
    # A movable global step runs while its block's input is held (one skip's worth).
    floats = max(2.5 * prof.conv + prof.skip, prof.whole, prof.movable + prof.skip)
    return int(_FLOAT * area * floats) + prof.weights


def tile_bytes(prof: Profile, tile: int, height: int, width: int) -> int:
    """Estimated peak device bytes of a tiled run with ``tile``-pixel tiles.

    A tile's input with its halo, the gathered/padded copy, the output and the convolution's
    workspace; plus the global steps that run whole on the device.
    """
    side_h, side_w = min(tile, height) + 2 * _HALO, min(tile, width) + 2 * _HALO
    per_tile = 2.5 * prof.conv * side_h * side_w
    return int(_FLOAT * (per_tile + prof.whole * height * width)) + prof.weights


#: What a CPU budget does not cover beyond the process's size before the photo: kernel
#: caches and per-tile buffers (measured up to 92 MB for a lite tiled run, README).
FIXED_OVERHEAD = 128 << 20
#: Bytes per pixel the photo's own buffers take on the host beside the networks: the decoded
#: photo and its RGB copy (PIL keeps 4 bytes a pixel), the float network input (12), the 8-bit
#: result and its image (7), and the finishing bands' slack.
PHOTO_BYTES = 32
#: What a damage mask adds: the mask image, its float copy (dilated once at a time) and the
#: painted photo.
MASK_BYTES = 12
#: What a hole fill (:mod:`oldphoto.holefill`) holds at its peak: the pull-push pyramid; the harmonic
#: relaxation after it, once the pyramid is freed, 10 bytes a pixel and 150 per damaged pixel
#: (inside this while under a third of the photo is damaged).
FILL_BYTES = 64


def photo_bytes(height: int, width: int, *, masked: bool = False, fill: str = "white") -> int:
    """Host bytes the photo's own buffers take while it is restored (counted in a CPU budget)."""
    per_pixel = PHOTO_BYTES + (MASK_BYTES if masked else 0) + (FILL_BYTES if masked and fill != "white" else 0)
    return per_pixel * height * width


@dataclass(frozen=True)
class Plan:
    """How one photo runs: untiled, or tiled with ``tile``-pixel tiles."""

    tiled: bool
    tile: int
    host_budget: int
    estimate: int
    #: Run the movable global steps (the patch search) in host memory: the device's is short.
    movable_on_host: bool = False


def plan(
    bundle: nn.Module,
    height: int,
    width: int,
    device: torch.device,
    tile: str | int | None = "auto",
    max_memory: str | int | None = "auto",
    *,
    precision: str = "fp32",
    reserved: int = 0,
    masked: bool = False,
) -> Plan:
    """Choose untiled (when it fits the budget or tiling is off) or the largest tile that fits.

    ``reserved`` is what the photo's own buffers take on the host (the decoded photo, the
    network input, the result; :func:`oldphoto.tiling.photo_bytes`): on the CPU they share
    the budget with the networks. With a budget given, an untiled run that the structural
    estimate rejects is measured without data (:mod:`.dryrun`), so a photo that fits is not
    tiled (tiling costs time).
    """
    requested = parse_tile(tile)
    explicit = parse_memory(max_memory)
    budget = explicit if explicit is not None else int(_AUTO_SHARE * free_memory(device))
    room = budget  # for an untiled run
    if device.type == "cpu":
        if explicit is not None:
            # An untiled run's heap fragments (``_HEAP_FACTOR``); a tiled one allocates its
            # maps once per pass and its tiles are small, so it keeps close to its tensors.
            room = int(budget / heap_factor())
            budget = int(budget / _TILED_SLACK)
        room -= reserved
        budget -= reserved
        if explicit is not None and budget <= 0:
            raise UsageError(
                f"--max-memory {human_bytes(explicit)} is too small for this photo ({height}×{width}): "
                f"its own buffers need about {human_bytes(reserved * heap_factor())}"
            )
    prof = profile(bundle)
    untiled = untiled_bytes(prof, height, width)
    if explicit is not None and device.type == "cpu" and requested is None and untiled > room:
        from oldphoto.tiling.dryrun import untiled_peak

        peak = untiled_peak(bundle, height, width, precision, masked)
        if peak is not None:
            untiled = peak
    if requested == 0 or (requested is None and untiled <= room) or (requested and requested >= max(height, width)):
        return Plan(False, 0, 0, untiled)
    if requested is None:
        # On the CPU the same memory also holds the full-size maps, so tiles take at most half
        # of it (a map that does not fit goes to a temporary file; small tiles cost more time
        # in per-tile work and halos than a spilled map costs in reading it back).
        share, largest = (0.5, CPU_MAX_AUTO_TILE) if device.type == "cpu" else (1.0, AUTO_TILES[0])
        fitting = [t for t in AUTO_TILES if t <= largest and tile_bytes(prof, t, height, width) <= share * budget]
        if not fitting:
            smallest = tile_bytes(prof, AUTO_TILES[-1], height, width) / share
            if device.type == "cpu" and explicit is not None:
                smallest = (smallest + reserved) * _TILED_SLACK  # in the user's terms
                # A network with a global step (lite's scratch attention) can need less untiled than tiled.
                smallest = min(smallest, (untiled + reserved) * heap_factor())
            else:
                smallest = min(smallest, untiled)
            raise UsageError(
                f"--max-memory {human_bytes(explicit if explicit is not None else budget)} is too small for this photo "
                f"({height}×{width}); it needs at least {human_bytes(smallest)}"
            )
        chosen = fitting[0]
    else:
        chosen = requested
        if explicit is not None and tile_bytes(prof, chosen, height, width) > budget:
            raise UsageError(
                f"--tile {chosen} needs about {human_bytes(tile_bytes(prof, chosen, height, width))}, "
                f"more than --max-memory {human_bytes(budget)}; use a smaller tile or --tile auto"
            )
    estimate = tile_bytes(prof, chosen, height, width)
    if device.type == "cpu":
        # Movable global steps run in host memory beside the maps: leave room for them too.
        host = max(0, budget - estimate - int(_FLOAT * prof.movable * height * width))
        on_host = False
    else:
        host = int(0.5 * free_host_memory())
        on_host = estimate + _FLOAT * prof.movable * height * width > budget
    return Plan(True, chosen, host, estimate, on_host)
