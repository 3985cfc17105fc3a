"""``weights/bundle_lite.py`` records every stage behind a bundled lite model, and refuses a run
that started from the very file it would replace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "weights"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bundle_lite import recipe  # noqa: E402


def _run(folder: Path, name: str, stage: str, step: int, **config: object) -> dict:
    """Write a run's card as training writes it (the fields recipe() reads) and return its training record."""
    training = {"stage": stage, "command": f"oldphoto train {stage} --out {folder}", "step": step,
                "wall_seconds": float(step), "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in config.items()}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"training": training}))
    return training


def test_a_chain_of_fine_tunes_is_recorded_back_to_its_vaes(tmp_path: Path) -> None:
    _run(tmp_path / "vae_a", "vae_a", "vae-a", 300)
    _run(tmp_path / "vae_b", "vae_b", "vae-b", 200)
    vaes = {"vae_a": tmp_path / "vae_a", "vae_b": tmp_path / "vae_b"}
    _run(tmp_path / "first", "quality", "mapping", 6000, init_from=None, **vaes)
    _run(tmp_path / "ft", "quality", "mapping", 1500, init_from=tmp_path / "first", **vaes)
    last = _run(tmp_path / "ft2", "quality", "mapping", 900, init_from=tmp_path / "ft", **vaes)
    assert [(s["stage"], s["step"]) for s in recipe(last, "quality")] == [
        ("vae-a", 300), ("vae-b", 200), ("mapping", 6000), ("mapping", 1500), ("mapping", 900)]


def test_a_bundled_card_ends_the_walk_and_can_stand_for_the_vaes(tmp_path: Path) -> None:
    bundled = tmp_path / "lite"
    bundled.mkdir()
    earlier = [{"stage": "vae-a", "command": "a", "step": 1, "wall_seconds": 1.0},
               {"stage": "mapping-scratch", "command": "m", "step": 4000, "wall_seconds": 9.0}]
    (bundled / "scratch.json").write_text(json.dumps({"training": {"recipe": earlier, "config": {}}}))
    # A retrain that takes the bundled model's networks as its VAEs (lite scratch, step 11).
    run = _run(tmp_path / "smooth", "scratch", "mapping-scratch", 3000, init_from=None, vae_a=bundled, vae_b=bundled)
    assert [s["step"] for s in recipe(run, "scratch")] == [1, 4000, 3000]
    # A fine-tune started from the bundled file: its recipe first, then this run.
    det = _run(tmp_path / "det", "scratch", "mapping-scratch", 600, init_from=bundled, vae_a=bundled, vae_b=bundled)
    assert [s["step"] for s in recipe(det, "scratch")] == [1, 4000, 600]


def test_a_run_started_from_the_file_it_would_replace_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / "lite"
    dest.mkdir()
    (dest / "detector.json").write_text(json.dumps({"training": {"recipe": [], "config": {}}}))
    _run(tmp_path / "det", "detector", "detector", 600, init_from=dest)
    (tmp_path / "det" / "detector.safetensors").write_bytes(b"")
    result = subprocess.run([sys.executable, str(ROOT / "weights" / "bundle_lite.py"), str(tmp_path / "det"),
                             "--name", "detector", "--dest", str(dest)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "the very file this would replace; point --init-from at a copy" in result.stderr


def test_a_chain_trained_from_scratch_is_its_own_recipe(tmp_path: Path) -> None:
    # --stem s2 --norm none: the chain trains end to end without VAE runs (vae_a, vae_b None).
    run = _run(tmp_path / "lite2", "quality", "mapping", 17000, init_from=None, vae_a=None, vae_b=None)
    assert [(s["stage"], s["step"]) for s in recipe(run, "quality")] == [("mapping", 17000)]


def test_the_detector_cards_working_scales_are_written_as_given(tmp_path: Path) -> None:
    import shutil

    from oldphoto import Restorer
    from oldphoto.weights.choice import lite_folder

    run = tmp_path / "run"
    run.mkdir()
    for suffix in (".json", ".safetensors"):
        shutil.copy(lite_folder() / f"detector{suffix}", run)
    for extra, expected in ((["--short-side", "256", "384", "--resize-back", "bilinear"], ([256, 384], "bilinear")),
                            (["--short-side", "320"], (320, None))):
        dest = tmp_path / f"dest{len(extra)}"
        dest.mkdir()
        done = subprocess.run([sys.executable, str(ROOT / "weights" / "bundle_lite.py"), str(run), "--name", "detector",
                               "--fp16", "--dest", str(dest), *extra], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        pipeline = json.loads((dest / "detector.json").read_text())["pipeline"]
        if expected[1] is None:  # the run's own card (the bundled one) already says bilinear; only the scale changes
            assert pipeline["short_side"] == expected[0]
        else:
            assert (pipeline["short_side"], pipeline["resize_back"]) == expected
        assert "scale_weights" not in pipeline  # the bundled card's weights do not outlive its scales
        meta, _ = Restorer(dest, device="cpu", precision="fp32").model("detector")  # the card still verifies and loads
        assert meta["pipeline"] == pipeline
    bundle = [sys.executable, str(ROOT / "weights" / "bundle_lite.py"), str(run), "--name", "detector", "--fp16", "--dest"]
    done = subprocess.run([*bundle, str(tmp_path / "fine"), "--fine-side", "512", "--fine-threshold", "0.85"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    pipeline = json.loads((tmp_path / "fine" / "detector.json").read_text())["pipeline"]
    assert (pipeline["fine_side"], pipeline["fine_threshold"]) == (512, 0.85)
    alone = subprocess.run([*bundle, str(tmp_path / "alone"), "--fine-side", "512"], capture_output=True, text=True, check=False)
    assert alone.returncode != 0 and "--fine-side and --fine-threshold go together" in alone.stderr
    strokes = subprocess.run([*bundle, str(tmp_path / "strokes"), "--fine-side", "512", "--fine-threshold", "0.85",
                              "--stroke-threshold", "0.1", "--stroke-length", "11"], capture_output=True, text=True, check=False)
    assert strokes.returncode == 0, strokes.stderr
    pipeline = json.loads((tmp_path / "strokes" / "detector.json").read_text())["pipeline"]
    assert (pipeline["stroke_threshold"], pipeline["stroke_length"]) == (0.1, 11)
    weighted = subprocess.run([*bundle, str(tmp_path / "weighted"), "--short-side", "192", "320", "416", "--scale-weights", "1", "2", "2"],
                              capture_output=True, text=True, check=False)
    assert weighted.returncode == 0, weighted.stderr
    pipeline = json.loads((tmp_path / "weighted" / "detector.json").read_text())["pipeline"]
    assert (pipeline["short_side"], pipeline["scale_weights"]) == ([192, 320, 416], [1.0, 2.0, 2.0])
    uneven = subprocess.run([*bundle, str(tmp_path / "uneven"), "--short-side", "192", "320", "--scale-weights", "1", "2", "2"],
                            capture_output=True, text=True, check=False)
    assert uneven.returncode != 0 and "--scale-weights gives one weight per --short-side" in uneven.stderr
    lone = subprocess.run([*bundle, str(tmp_path / "lone"), "--stroke-threshold", "0.1", "--stroke-length", "11"],
                          capture_output=True, text=True, check=False)
    assert lone.returncode != 0 and "--stroke-threshold and --stroke-length go together, with --fine-side" in lone.stderr


def test_the_quality_cards_views_are_written_as_given(tmp_path: Path) -> None:
    """``--ensemble 2`` puts the two-view average in the card's pipeline; without it the run's own stays."""
    import shutil

    from oldphoto import Restorer
    from oldphoto.weights.choice import lite_folder

    run = tmp_path / "run"
    run.mkdir()
    for suffix in (".json", ".safetensors"):
        shutil.copy(lite_folder() / f"quality{suffix}", run)
    card = json.loads((run / "quality.json").read_text())
    card["pipeline"].pop("ensemble", None)  # as a training run writes it
    (run / "quality.json").write_text(json.dumps(card))
    report = tmp_path / "scores.json"  # the shape benchmarks/quality.py --json writes
    report.write_text(json.dumps({"files": ["kodim01.png"], "seed": 0, "seconds_per_photo": {"model run": 1.0},
                                  "mean": {"noise": {"input": [20.0, 0.5], "median 3x3": [24.0, 0.6], "model run": [28.0, 0.8]}}}))
    bundle = [sys.executable, str(ROOT / "weights" / "bundle_lite.py"), str(run), "--fp16", "--scores", str(report), "--dest"]
    for extra, expected in ((["--ensemble", "2"], 2), ([], None)):
        dest = tmp_path / f"dest{len(extra)}"
        done = subprocess.run([*bundle, str(dest), *extra], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        meta = json.loads((dest / "quality.json").read_text())
        assert meta["pipeline"].get("ensemble") == expected
        assert meta["scores"]["noise"]["lite"] == [28.0, 0.8]
        assert Restorer(dest, device="cpu", precision="fp32").model("quality")[0]["pipeline"] == meta["pipeline"]
    wrong = subprocess.run([*bundle, str(tmp_path / "three"), "--ensemble", "3"], capture_output=True, text=True, check=False)
    assert wrong.returncode != 0 and "invalid choice" in wrong.stderr
    # A candidate written elsewhere goes without scores, for benchmarks/quality.py to score it.
    unscored = [sys.executable, str(ROOT / "weights" / "bundle_lite.py"), str(run), "--fp16", "--ensemble", "2", "--speed", "4.5",
                "--dest", str(tmp_path / "cand")]
    done = subprocess.run(unscored, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    meta = json.loads((tmp_path / "cand" / "quality.json").read_text())
    assert "scores" not in meta and meta["pipeline"]["ensemble"] == 2
    assert Restorer(tmp_path / "cand", device="cpu", precision="fp32").model("quality")[0]["pipeline"] == meta["pipeline"]
