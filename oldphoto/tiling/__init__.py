"""Exact tiled inference for large scans, in memory the user sets (``--tile``, ``--max-memory``).

Instance norm takes its statistics over the whole image, so tiles normalised on their own
shift tone from tile to tile. Here nothing is normalised per tile: the networks run one
convolution at a time over the whole image, each computed tile by tile with exactly the
halo its kernel needs (borders resolved against the global image), each instance norm's
statistics accumulated over the whole map and applied when the next convolution reads its
tiles. Full-size intermediate maps stay off the device (in RAM, or temporary files beyond
the budget); the device only ever holds a tile. The result equals the untiled one to
float rounding (tests hold it to 1e-4 in float and 1/255 in 8 bits).

Modules: :mod:`.budget` (parse options, estimate, plan), :mod:`.executor` (the pass-by-pass
runner of the networks' steps), :mod:`.maps` (full-size maps with their pending norm, and
tile grids), :mod:`.store` (host maps in RAM or on disk), :mod:`.transfer` (pinned,
overlapped copies on CUDA), :mod:`.run` (the entry point the Restorer calls).
"""

from oldphoto.tiling.budget import Plan, parse_memory, parse_tile, photo_bytes, plan
from oldphoto.tiling.run import finish_map, restore_pixels

__all__ = ["Plan", "finish_map", "parse_memory", "parse_tile", "photo_bytes", "plan", "restore_pixels"]
