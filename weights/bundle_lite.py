"""Put a trained lite run into the package: ``oldphoto/weights/lite/quality.{safetensors,json}``.

Step 5 of "Training the lite model" in ``weights/README.md``. Reads the mapping run's
checkpoint and card (``--residual`` wiring), the VAE runs it started from and the
``benchmarks/quality.py --json`` scores of that checkpoint, and writes the bundled copy with a
card recording the data, every stage's exact command, steps and wall time, the scores, and the
sha256 that ``oldphoto`` checks before it loads the file::

    python weights/bundle_lite.py runs/lite/lite --scores runs/lite/quality.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="the mapping run's folder (holds quality.safetensors + quality.json)")
    ap.add_argument("--scores", type=Path, nargs="+", required=True,
                    help="benchmarks/quality.py --json output(s) for this run: e.g. the baselines and the model run apart, same photos and seed")
    ap.add_argument("--speed", type=float, default=None, help="measured seconds per megapixel (benchmarks/lite_speed.py)")
    ap.add_argument("--dest", type=Path, default=ROOT / "oldphoto" / "weights" / "lite")
    ap.add_argument("--reproduce", default=None,
                    help="the mapping command that reproduces this checkpoint, when it is not the run's last command "
                         "(e.g. an earlier checkpoint of the run); the command as run is kept beside it")
    ap.add_argument("--bf16-error", nargs=2, type=float, metavar=("MEAN", "MAX"), default=None,
                    help="benchmarks/precision.py --weights on shared/photos/old: bf16 vs fp32, 8-bit levels; "
                         "a mean within 1 level lets --precision auto pick bf16 for lite on CPUs with native bf16")
    ap.add_argument("--note", action="append", default=[], help="a sentence for the card's training notes (repeatable)")
    args = ap.parse_args()

    meta = json.loads((args.run / "quality.json").read_text())
    if not meta.get("pipeline", {}).get("residual"):
        sys.exit(f"{args.run}: not a --residual mapping run")
    report = merge([json.loads(p.read_text()) for p in args.scores])
    model_key = next(k for k in report["mean"][next(iter(report["mean"]))] if k.startswith("model "))
    training = meta["training"]
    stages = []
    for key in ("vae_a", "vae_b"):
        folder = Path(training["config"][key])
        card = json.loads((folder / f"{key}.json").read_text())["training"]
        stages.append({k: card[k] for k in ("stage", "command", "step", "wall_seconds")})
    start = training["config"].get("init_from")
    if start and (Path(start) / "quality.json").is_file():  # a fine-tuning run: record the run it started from
        first = json.loads((Path(start) / "quality.json").read_text())["training"]
        stages.append({k: first[k] for k in ("stage", "command", "step", "wall_seconds")})
    if args.reproduce:
        training["command_as_run"] = training["command"]
        training["command"] = args.reproduce
    training["notes"] = [*training.get("notes", []), *args.note]
    stages.append({k: training[k] for k in ("stage", "command", "step", "wall_seconds")})
    training["recipe"] = stages
    training["wall_seconds_total"] = round(sum(s["wall_seconds"] for s in stages), 1)

    args.dest.mkdir(parents=True, exist_ok=True)
    weights = args.dest / "quality.safetensors"
    shutil.copyfile(args.run / "quality.safetensors", weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    meta["model"] = "lite"
    skip = bool(meta["networks"]["mapping"]["config"].get("skip"))
    wiring = "e = encoder(input); restored = input + decoder(e + mapping(e))" if skip else "restored = input + decoder(mapping(encoder(input)))"
    meta["description"] = (
        "The bundled lite model (quality mode): the published networks at lite widths, full resolution "
        f"(no downsampling), trained on this project's CPU with oldphoto's training stages; {wiring}. "
        "See weights/README.md."
    )
    meta["bundled"] = {"sha256": digest, "bytes": weights.stat().st_size}
    if args.bf16_error is not None:
        mean, worst = args.bf16_error
        meta["precision"] = {"auto_bf16": mean <= 1.0, "bf16_vs_fp32_levels": {"mean": mean, "max": worst},
                             "measured": "benchmarks/precision.py --weights oldphoto/weights/lite --subsets old"}
    meta["scores"] = summarise(report, model_key)
    meta["scores"]["benchmark"] = "benchmarks/quality.py on kodak24 (held out from training), fp32"
    if args.speed is not None:
        meta["scores"]["seconds per megapixel"] = args.speed
    meta["scores"]["target"] = target(meta["scores"])
    (args.dest / "quality.json").write_text(json.dumps(meta, indent=1) + "\n")
    overall = meta["scores"].get("project overall", {})
    print(f"{args.dest}: {weights.stat().st_size / 1e6:.2f} MB, sha256 {digest[:12]}…; project overall {overall}")


if __name__ == "__main__":
    main()
