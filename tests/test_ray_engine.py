"""``--engine ray`` on a real Ray cluster on this machine (loopback only), against the local engine.

One cluster for the module (started by ``ray.init`` here, stopped at the end), so the Ray
tests pay its start-up once. The CLI runs in this process (it joins the running Ray) or, to
be killed, in a subprocess given the cluster's address.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from oldphoto.cli import app

RAY_MISSING = "ray is not installed (pip install '.[ray]' in oldphoto's folder); the Ray engine tests need it"


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    return result.exit_code, result.stdout, result.stderr


def _folder(root: Path, count: int, size: tuple[int, int], corrupt: str | None = None) -> Path:
    rng = np.random.default_rng(7)
    root.mkdir(parents=True)
    for i in range(count):
        w, h = size[0] + 4 * (i % 3), size[1] + 4 * (i % 2)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"scan{i:02d}.png")
    if corrupt is not None:
        (root / corrupt).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _parts(root: Path) -> list[str]:
    return [name for name in _files(root) if name.endswith(".part")]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A two-CPU Ray on loopback for this module; yields its address."""
    ray = pytest.importorskip("ray", reason=RAY_MISSING)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
        object_store_memory=100 * 2**20, logging_level="error", log_to_driver=False,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def single_thread() -> Iterator[None]:
    """The local reference run with one torch thread, as each ``--cpus-per-worker 1`` actor runs.

    float32 convolutions on the CPU sum in an order that depends on the thread count (±1
    level on a few pixels), for the local engine too; same threads, same bytes.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_workers_import_this_checkout(cluster: str) -> None:
    import ray

    import oldphoto

    @ray.remote(num_cpus=0)
    def where() -> str:
        import oldphoto as there

        return there.__file__

    assert ray.get(where.remote()) == oldphoto.__file__


def test_ray_run_equals_the_local_run(cluster: str, tiny_weights: Path, tmp_path: Path, single_thread: None) -> None:
    src = _folder(tmp_path / "in", 12, (40, 32), corrupt="scan05.png")
    common = ("--weights", str(tiny_weights), "--no-faces", "--json", "--device", "cpu")
    code, out, _ = _cli("restore", str(src), str(tmp_path / "local"), *common, "--report", str(tmp_path / "local.html"))
    assert code == 1
    start = time.perf_counter()
    code, out_ray, err = _cli(
        "restore", str(src), str(tmp_path / "ray"), *common, "--engine", "ray", "--ray-address", cluster, "--workers", "2",
        "--report", str(tmp_path / "ray.html"),
    )
    print(f"ray run: {time.perf_counter() - start:.1f} s")
    assert code == 1, err
    local = [json.loads(line) for line in out.splitlines()]
    remote = [json.loads(line) for line in out_ray.splitlines()]
    assert len(remote) == len(local) == 12
    assert {r["node"] for r in remote} and all(r["node"] for r in remote) and all("node" not in r for r in local)

    def comparable(record: dict[str, Any], out_dir: str) -> dict[str, Any]:
        record = {k: v for k, v in record.items() if k not in ("seconds", "node", "review")}
        record["output"] = record["output"].replace(str(tmp_path / out_dir), "OUT")
        return record

    assert [comparable(r, "ray") for r in remote] == [comparable(r, "local") for r in local]
    assert [r["status"] for r in remote].count("failed") == 1 and "scan05.png" in (remote[5]["error"] or "")
    assert _files(tmp_path / "ray") == _files(tmp_path / "local") and len(_files(tmp_path / "ray")) == 11
    for name in _files(tmp_path / "local"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    # The provenance the workers wrote, and the report the driver kept from their records and thumbnails.
    from oldphoto.provenance import parse, read_xmp

    assert parse(read_xmp(tmp_path / "ray" / "scan00.png"))["original"] == "scan00.png"
    manifest = json.loads((tmp_path / "ray.json").read_text())
    assert [p["status"] for p in manifest["photos"]].count("restored") == 11
    for photo in manifest["photos"]:
        for thumb in photo.get("review", {}).get("thumbs", {}).values():
            assert (tmp_path / "ray_files" / thumb).is_file()


def test_killing_the_driver_then_rerunning_resumes(cluster: str, tiny_weights: Path, tmp_path: Path) -> None:
    src = _folder(tmp_path / "in", 24, (160, 128))
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "oldphoto", "restore", str(src), str(out), "--weights", str(tiny_weights), "--no-faces",
        "--json", "--engine", "ray", "--ray-address", cluster, "--workers", "2",
    ]
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = driver.stdout.readline() if driver.stdout else ""
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert json.loads(first)["status"] == "restored"
    finished = {name: (out / name).stat() for name in _files(out) if not name.endswith(".part")}
    assert 0 < len(finished) < 24

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    records = [json.loads(line) for line in rerun.stdout.splitlines()]
    assert len(records) == 24 and {r["status"] for r in records} <= {"restored", "skipped"}
    for name, before in finished.items():
        after = (out / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), f"{name} was rewritten"
        assert next(r for r in records if r["output"].endswith(name))["status"] == "skipped"
    assert _parts(out) == [] and len(_files(out)) == 24
    for name in _files(out):
        with Image.open(out / name) as restored:
            restored.load()


def test_a_killed_worker_is_replaced_and_every_photo_accounted_for(cluster: str, tiny_weights: Path, tmp_path: Path) -> None:
    from oldphoto import batch
    from oldphoto.engines import ray as ray_engine

    src = _folder(tmp_path / "in", 16, (160, 128))
    jobs = batch.plan(src, tmp_path / "out")
    workers: list[dict[str, Any]] = []
    killed: list[int] = []

    def kill_one_worker(record: batch.Record) -> None:
        if not killed:
            killed.append(workers[0]["pid"])
            os.kill(workers[0]["pid"], signal.SIGKILL)

    records = ray_engine.run(
        jobs, batch.Settings(), {"weights": tiny_weights, "device": "cpu", "faces": False},
        ray_engine.Cluster(workers=2), on_workers=workers.extend, on_record=kill_one_worker,
    )
    assert killed and len(workers) == 2
    assert [r.input for r in records] == [str(j.source) for j in jobs]
    assert all(r.status in ("restored", "skipped") for r in records), [r.error for r in records if r.error]
    assert _files(tmp_path / "out") == [j.output.name for j in jobs]


def test_missing_weights_fail_fast_with_the_usual_message(cluster: str, tmp_path: Path) -> None:
    src = _folder(tmp_path / "in", 3, (32, 32))
    start = time.perf_counter()
    code, _, err = _cli("restore", str(src), str(tmp_path / "out"), "--weights", str(tmp_path), "--engine", "ray", "--workers", "2")
    assert code == 1 and err.strip().count("\n") == 0 and "no 'quality' model" in err
    assert time.perf_counter() - start < 60
    assert not (tmp_path / "out").exists() or _files(tmp_path / "out") == []


def test_without_ray_the_engine_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, tiny_weights: Path, tmp_path: Path) -> None:
    src = _folder(tmp_path / "in", 1, (16, 16))
    monkeypatch.setitem(sys.modules, "ray", None)  # what a missing package looks like to `import ray`
    code, _, err = _cli("restore", str(src), str(tmp_path / "out"), "--weights", str(tiny_weights), "--engine", "ray")
    assert code == 1 and err.count("\n") == 1
    assert "pip install '.[ray]' in oldphoto's folder" in err


def test_ray_options_need_the_ray_engine(tmp_path: Path) -> None:
    src = _folder(tmp_path / "in", 1, (16, 16))
    code, _, err = _cli("restore", str(src), str(tmp_path / "out"), "--workers", "2")
    assert code == 2 and "--workers only apply with --engine ray" in err
    code, _, err = _cli("restore", str(src), str(tmp_path / "out"), "--engine", "spark")
    assert code == 2 and "--engine must be local or ray" in err
