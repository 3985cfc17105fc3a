"""Put a trained lite run into the package: ``oldphoto/weights/lite/NAME.{safetensors,json}``.

Step 5 of "Training the lite model" in ``weights/README.md``. Reads the run's checkpoint and
card (a ``--residual`` mapping run for ``quality`` and ``scratch``, a detector run), the VAE
runs it started from and its benchmark scores (``benchmarks/quality.py --json`` for quality,
``benchmarks/scratch_quality.py --json`` for scratch and the detector, and for the detector
also ``benchmarks/scratch_detection.py --json``, per damage kind), and writes the bundled
copy with a card recording the data, every stage's exact command, steps and wall time, the
scores, and the sha256 that ``oldphoto`` checks before it loads the file::

    python weights/bundle_lite.py runs/lite/lite --scores runs/lite/quality.json
    python weights/bundle_lite.py runs/scr/map --name scratch --scores runs/scr/scratch.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEST = ROOT / "oldphoto" / "weights" / "lite"  # the package's bundled models
sys.path.insert(0, str(ROOT / "benchmarks"))

from oldphoto.fsutil import sha256_file  # noqa: E402
from oldphoto.pipeline import levels_order  # noqa: E402
from quality import PROJECT_SETS, STANDARD_SETS, best_classical, overall  # noqa: E402  (the benchmark's own sets and table)


def summarise(report: dict[str, Any], model_key: str) -> dict[str, Any]:
    """Per set and overall: input, the best classical filter and lite, as [PSNR dB, SSIM] (rounded)."""
    mean = report["mean"]
    out: dict[str, Any] = {}

    def row(vals: dict[str, list[float]]) -> dict[str, Any]:
        best = best_classical(vals)
        return {
            "input": [round(v, 4) for v in vals["input"]],
            "best classical": [round(vals[best][0], 4), round(vals[best][1], 4), best],
            "lite": [round(v, 4) for v in vals[model_key]],
        }

    sets = {s: mean[s] for s in (*PROJECT_SETS, *STANDARD_SETS) if s in mean}
    for label, vals in [*sets.items(), *overall(sets).items()]:
        out[label] = row(vals)
    out["photos"] = len(report["files"])
    out["seed"] = report["seed"]
    out["seconds per photo"] = round(report["seconds_per_photo"][model_key], 3)
    return out


def target(scores: dict[str, Any]) -> str:
    """The issue's quality target (overall: input + 3 dB, best classical + 1 dB), and whether it is met."""
    parts, met = [], True
    for label in ("project overall", "standard overall"):
        if label in scores:
            lite, inp, best = (scores[label][k][0] for k in ("lite", "input", "best classical"))
            parts.append(f"{label} {lite - inp:+.2f} dB over the input and {lite - best:+.2f} dB over the best classical filter")
            met = met and lite >= inp + 3 and lite >= best + 1
    return f"issue 14: lite >= input + 3 dB and >= best classical + 1 dB overall. {'Met' if met else 'Not met'}: " + "; ".join(parts) + "."


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from several runs of quality.py over the same photos and seed (methods side by side)."""
    first = reports[0]
    for r in reports[1:]:
        if r["files"] != first["files"] or r["seed"] != first["seed"]:
            sys.exit("--scores: the reports cover different photos or seeds")
        for s, methods in r["mean"].items():
            first["mean"].setdefault(s, {}).update(methods)
        first["seconds_per_photo"].update(r["seconds_per_photo"])
    return first


def half_copy(src: Path, dest: Path) -> None:
    """Copy a safetensors checkpoint with its float tensors rounded to float16 (header metadata kept)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = f.metadata()
    save_file({k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, str(dest), metadata=metadata)


def scratch_summary(report: dict[str, Any], name: str) -> dict[str, Any]:
    """The scratch benchmark's means (rounded): per set and method for scratch, the detector's for detector."""
    def rounded(d: dict[str, float]) -> dict[str, float]:
        return {k: round(v, 4) for k, v in d.items()}

    table = report["detector"] if name == "detector" else report["mean"]
    out: dict[str, Any] = {s: ({m: rounded(v) for m, v in row.items()} if name != "detector" else rounded(row)) for s, row in table.items()}
    out["photos"] = len(report["files"])
    out["seed"] = report["seed"]
    out["damaged area"] = {s: round(v, 5) for s, v in report["damaged_fraction"].items()}
    out["benchmark"] = "benchmarks/scratch_quality.py on kodak24 (held out from training) with procedural damage, fp32"
    return out


def kinds_summary(report: dict[str, Any]) -> dict[str, Any]:
    """scratch_detection.py's scores at the card's cut: per damage kind, precision and recall (2 px tolerance)."""
    cut = f"{report['card']['threshold']:g}/{report['card']['dilation']}"
    table = {s: {k: round(v, 4) for k, v in cuts[cut].items()} for s, cuts in report["scores"].items()}
    undamaged = {"undamaged, share marked": round(report["undamaged_marked"][cut], 5)} if "undamaged_marked" in report else {}
    return {**table, **undamaged, "photos": len(report["files"]), "seed": report["seed"], "cut": report["card"],
            "benchmark": "benchmarks/scratch_detection.py" + (" --old" if report["old"] else "")
                         + f" on kodak24 (held out from training), one damage kind per set, {report['tolerance_px']} px tolerance, fp32"}


def recipe(training: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Every stage that led to this checkpoint: the VAE runs, each run it was fine-tuned from
    (following ``--init-from`` back; a bundled card's own recipe ends the walk), itself."""
    def entry(run: dict[str, Any]) -> dict[str, Any]:
        return {k: run[k] for k in ("stage", "command", "step", "wall_seconds")}

    earlier: list[dict[str, Any]] = []
    start = training["config"].get("init_from")
    for _ in range(16):  # a chain of fine-tunes, never a loop
        card = Path(start) / f"{name}.json" if start else None
        if card is None or not card.is_file():
            break
        parent = json.loads(card.read_text())["training"]
        if "recipe" in parent:  # a bundled model: its recipe already starts with the VAEs
            return [*parent["recipe"], *earlier, entry(training)]
        earlier.insert(0, entry(parent))
        start = parent["config"].get("init_from")
    vaes: list[dict[str, Any]] = []
    for key in ("vae_a", "vae_b") if name != "detector" else ():
        if not training["config"].get(key):  # a chain trained from scratch (--stem s2 --norm none) has no VAE runs
            continue
        folder = Path(training["config"][key])
        if (folder / f"{key}.json").is_file():
            vaes.append(entry(json.loads((folder / f"{key}.json").read_text())["training"]))
        else:  # a bundled model's networks as the VAEs (a retrain of lite): its recipe came first
            bundled = json.loads((folder / f"{name}.json").read_text())["training"]["recipe"]
            vaes += [s for s in bundled if s not in vaes]
    return [*vaes, *earlier, entry(training)]


DESCRIPTIONS = {
    "quality": "The bundled lite model (quality mode): the published networks at lite widths, {resolution}, "
               "trained on this project's CPU with oldphoto's training stages; {wiring}.{levels} See weights/README.md.",
    "scratch": "The bundled lite model (scratch mode): the published networks at lite widths (latent at 1/4 resolution, "
               "partial non-local block), trained on this project's CPU with procedural damage; damaged pixels are first filled "
               "from their surroundings (pipeline.hole_fill), then {wiring} on the damaged pixels only "
               "(the rest stays the photo's), then the whole photo through the lite quality model. See weights/README.md.",
    "detector": "The bundled lite scratch detector: the published UNet at lite width, trained on this project's CPU "
                "on procedural damage masks. See weights/README.md.",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="the run's folder (holds NAME.safetensors + NAME.json)")
    ap.add_argument("--name", choices=tuple(DESCRIPTIONS), default="quality", help="which lite model the run is")
    ap.add_argument("--scores", type=Path, nargs="+", default=[],
                    help="benchmark --json output(s) for this run: quality.py's for quality (e.g. the baselines and the model "
                         "run apart, same photos and seed), scratch_quality.py's for scratch and detector; without them "
                         "(scratch, detector) the card is written for the benchmark to score it (--dest a scratch folder)")
    ap.add_argument("--speed", type=float, default=None, help="measured seconds per megapixel (benchmarks/lite_speed.py)")
    ap.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    ap.add_argument("--reproduce", default=None,
                    help="the command that reproduces this checkpoint, when it is not the run's last command "
                         "(e.g. an earlier checkpoint of the run); the command as run is kept beside it")
    ap.add_argument("--bf16-error", nargs=2, type=float, metavar=("MEAN", "MAX"), default=None,
                    help="benchmarks/precision.py --weights on shared/photos/old: bf16 vs fp32, 8-bit levels; "
                         "a mean within 1 level lets --precision auto pick bf16 for lite on CPUs with native bf16")
    ap.add_argument("--bf16-mask-differ", type=float, metavar="SHARE", default=None,
                    help="detector: benchmarks/precision.py --weights --subsets scratched --mask detected, the share of mask "
                         "pixels bf16 flips; at most 0.001 lets --precision auto pick bf16 for it on CPUs with native bf16")
    ap.add_argument("--fp16", action="store_true",
                    help="store the float tensors as float16 (half the size; loaded into the fp32 networks, which still "
                         "compute in fp32); for the detector, whose 2.4 M parameters would not fit the 10 MB bundle in fp32")
    ap.add_argument("--levels", nargs="?", const="before", choices=("before", "after"), default=None,
                    help="quality: run the gated levels step (pipeline.levels; undoes fading, see oldphoto/tone.py) before the "
                         "networks (the bare flag) or on the restored photo ('after')")
    ap.add_argument("--ensemble", type=int, choices=(1, 2, 4), default=None,
                    help="quality: restore each photo as it is and flipped, and average (pipeline.ensemble; 2 = and mirrored, "
                         "4 = and upside down and both; oldphoto/ensemble.py); give the scores measured so")
    ap.add_argument("--note", action="append", default=[], help="a sentence for the card's training notes (repeatable)")
    ap.add_argument("--threshold", type=float, default=None, help="detector: the lite card's probability threshold (default: the run's)")
    ap.add_argument("--dilation", type=int, default=None, help="detector: grow the lite card's masks by this many pixels (default: none)")
    ap.add_argument("--short-side", type=int, nargs="+", default=None,
                    help="detector: the working scale(s), pixels on the short side; several are averaged (default: the run's, 256)")
    ap.add_argument("--scale-weights", type=float, nargs="+", default=None,
                    help="detector: the working scales' weights in their mean, one per --short-side (default: equal)")
    ap.add_argument("--resize-back", choices=("nearest", "bilinear"), default=None,
                    help="detector: how each scale's probability is resized to the photo (default: nearest, as published)")
    ap.add_argument("--fine-side", type=int, default=None,
                    help="detector: a finer working scale whose probability alone marks a pixel at --fine-threshold")
    ap.add_argument("--fine-threshold", type=float, default=None, help="detector: the fine scale's own cut (with --fine-side)")
    ap.add_argument("--stroke-threshold", type=float, default=None,
                    help="detector: a lower cut for the fine scale where it lies on a straight run (oldphoto/strokes.py)")
    ap.add_argument("--stroke-length", type=int, default=None,
                    help="detector: the run's length in pixels of the fine working size (odd; with --stroke-threshold)")
    args = ap.parse_args()

    name = args.name
    if (args.fine_side is None) != (args.fine_threshold is None):
        ap.error("--fine-side and --fine-threshold go together")
    if (args.stroke_threshold is None) != (args.stroke_length is None) or (args.stroke_threshold is not None and args.fine_side is None):
        ap.error("--stroke-threshold and --stroke-length go together, with --fine-side")
    if args.scale_weights is not None and len(args.scale_weights) != len(args.short_side or []):
        ap.error("--scale-weights gives one weight per --short-side")
    if name == "quality" and not args.scores and args.dest.resolve() == DEFAULT_DEST.resolve():
        sys.exit("--scores: the bundled quality model's card needs benchmarks/quality.py's scores "
                 "(a candidate written elsewhere with --dest goes without, for quality.py to score it)")
    meta = json.loads((args.run / f"{name}.json").read_text())
    if name != "detector" and not meta.get("pipeline", {}).get("residual"):
        sys.exit(f"{args.run}: not a --residual mapping run")
    training = meta["training"]
    start = training["config"].get("init_from")
    if start and (Path(start) / f"{name}.json").resolve() == (args.dest / f"{name}.json").resolve():
        sys.exit(f"{args.run}: it started from {start}, the very file this would replace; point --init-from at a copy")
    if args.reproduce:
        training["command_as_run"] = training["command"]
        training["command"] = args.reproduce
    training["notes"] = [*training.get("notes", []), *args.note]
    training["recipe"] = recipe(training, name)
    training["wall_seconds_total"] = round(sum(s["wall_seconds"] for s in training["recipe"]), 1)

    args.dest.mkdir(parents=True, exist_ok=True)
    weights = args.dest / f"{name}.safetensors"
    if args.fp16:
        half_copy(args.run / f"{name}.safetensors", weights)
    else:
        shutil.copyfile(args.run / f"{name}.safetensors", weights)
    digest = sha256_file(weights)
    meta["model"] = "lite"
    skip = bool(meta.get("networks", {}).get("mapping", {}).get("config", {}).get("skip"))
    wiring = "e = encoder(input); restored = input + decoder(e + mapping(e))" if skip else "restored = input + decoder(mapping(encoder(input)))"
    encoder = meta.get("networks", {}).get("encoder", {}).get("config", {})
    resolution = ("at half resolution (a learnt 2x2 stride-2 stem and tail in place of the 7x7 convs, as FFDNet's "
                  "pixel-unshuffle; no instance norms)" if encoder.get("stem") == "s2" else "full resolution (no downsampling)")
    if args.levels:
        meta["pipeline"]["levels"] = True if args.levels == "before" else "after"
    if args.ensemble is not None:
        meta["pipeline"]["ensemble"] = args.ensemble
    when = {"before": "first", "after": "on the restored photo"}.get(levels_order(meta["pipeline"]))
    levels = f" A gated levels step undoes fading {when} (pipeline.levels, oldphoto/tone.py)." if when else ""
    meta["description"] = DESCRIPTIONS[name].format(wiring=wiring, resolution=resolution, levels=levels)
    meta["bundled"] = {"sha256": digest, "bytes": weights.stat().st_size, "stored_as": "float16" if args.fp16 else "float32"}
    if name == "detector":  # lite-only detection settings (how each card's were chosen: weights/README.md)
        scales = args.short_side[0] if args.short_side and len(args.short_side) == 1 else args.short_side
        if args.short_side is not None and args.scale_weights is None:
            meta["pipeline"].pop("scale_weights", None)  # new scales without weights: an equal mean, not the run's old weights
        for key, value in (("threshold", args.threshold), ("dilation", args.dilation), ("short_side", scales), ("scale_weights", args.scale_weights),
                           ("resize_back", args.resize_back), ("fine_side", args.fine_side),
                           ("fine_threshold", args.fine_threshold), ("stroke_threshold", args.stroke_threshold),
                           ("stroke_length", args.stroke_length)):
            if value is not None:
                meta["pipeline"][key] = value
    if name == "scratch":  # fill the damage only, then restore the whole photo in quality mode (measured: docs/TRAINING.md)
        meta["pipeline"].update({"keep_undamaged": True, "fill_margin": 0, "then": "quality"})
    measured = "benchmarks/precision.py --weights oldphoto/weights/lite " + (
        "--subsets old" if name == "quality" else "--subsets scratched --mask detected")
    if args.bf16_error is not None:
        mean, worst = args.bf16_error
        meta["precision"] = {"auto_bf16": mean <= 1.0, "bf16_vs_fp32_levels": {"mean": mean, "max": worst}, "measured": measured}
    if args.bf16_mask_differ is not None:
        meta["precision"] = {"auto_bf16": args.bf16_mask_differ <= 0.001, "bf16_vs_fp32_mask_pixels_differ": args.bf16_mask_differ,
                             "measured": measured}
    reports = [json.loads(p.read_text()) for p in args.scores]
    if not reports:
        meta.pop("scores", None)
    elif name == "quality":
        report = merge(reports)
        model_key = next(k for k in report["mean"][next(iter(report["mean"]))] if k.startswith("model "))
        meta["scores"] = summarise(report, model_key)
        meta["scores"]["benchmark"] = "benchmarks/quality.py on kodak24 (held out from training), fp32"
    elif name == "detector":
        meta["scores"] = {}
        for report in reports:  # scratch_quality.py's detector scores and scratch_detection.py's per kind (clean, --old)
            if "tolerance_px" in report:
                meta["scores"]["by kind, old" if report["old"] else "by kind"] = kinds_summary(report)
            else:
                meta["scores"].update(scratch_summary(report, name))
    else:
        meta["scores"] = scratch_summary(reports[0], name)
    if args.speed is not None and "scores" in meta:
        meta["scores"]["seconds per megapixel"] = args.speed
    if name == "quality" and "scores" in meta:
        meta["scores"]["target"] = target(meta["scores"])
    (args.dest / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{args.dest}: {name} {weights.stat().st_size / 1e6:.2f} MB, sha256 {digest[:12]}…")


if __name__ == "__main__":
    main()
