"""An output that cannot be written is found before the first photo is restored (exit 2, one line).

The read-only folders here are real: a read-only bind mount made in a private mount namespace
(``unshare``), which refuses writes to root too, so the tests mean the same as root (CI) and as
a user. Where no namespace can be made, a user's folder without write permission stands in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

CLI = [sys.executable, "-m", "oldphoto"]


def _photos(folder: Path, count: int = 2) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        Image.new("RGB", (24, 16), (40 * i, 90, 120)).save(folder / f"p{i}.png")
    return folder


def _can_mount_read_only() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "mount", "-t", "tmpfs", "tmpfs", "/mnt"], capture_output=True)
    return probe.returncode == 0


MOUNT = _can_mount_read_only()


def _run_with_read_only(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with ``folder`` read-only (as a read-only bind mount of itself) for the run alone."""
    command = [*CLI, *args]
    env = {**os.environ, "COLUMNS": "400"}
    if MOUNT:
        script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
        return subprocess.run(["unshare", "-rm", "sh", "-c", script, str(folder), *command], capture_output=True, text=True, env=env)
    if os.geteuid() == 0:
        pytest.skip("no mount namespace here (unshare), and root writes into folders without write permission")
    folder.chmod(0o555)
    try:
        return subprocess.run(command, capture_output=True, text=True, env=env)
    finally:
        folder.chmod(0o755)


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr + result.stdout
    return lines[0]


def test_a_folder_into_a_read_only_folder_stops_before_restoring(tiny_weights: Path, tmp_path: Path) -> None:
    src = _photos(tmp_path / "in")
    locked = tmp_path / "ro"
    locked.mkdir()
    result = _run_with_read_only(locked, "restore", str(src), str(locked / "outdir"), "--weights", str(tiny_weights), "--device", "cpu")
    assert result.returncode == 2, result.stderr
    line = _one_error_line(result)
    assert line.startswith(f"error: {locked / 'outdir'}: outputs cannot be written there (") and "nothing was restored" in line
    assert list(locked.iterdir()) == []


def test_a_photo_into_a_read_only_folder_stops_before_restoring(tiny_weights: Path, tmp_path: Path) -> None:
    src = _photos(tmp_path / "in") / "p0.png"
    locked = tmp_path / "ro"
    locked.mkdir()
    result = _run_with_read_only(locked, "restore", str(src), str(locked / "out.png"), "--weights", str(tiny_weights), "--device", "cpu")
    assert result.returncode == 2, result.stderr
    assert _one_error_line(result).startswith(f"error: {locked}: outputs cannot be written there (")
    assert list(locked.iterdir()) == []


def test_the_ray_engine_is_checked_before_ray_starts(tiny_weights: Path, tmp_path: Path) -> None:
    src = _photos(tmp_path / "in")
    locked = tmp_path / "ro"
    locked.mkdir()
    result = _run_with_read_only(
        locked, "restore", str(src), str(locked / "out"), "--engine", "ray", "--workers", "1", "--weights", str(tiny_weights),
        "--device", "cpu",
    )
    assert result.returncode == 2, result.stderr
    assert _one_error_line(result).startswith(f"error: {locked / 'out'}: outputs cannot be written there (")


def test_finished_outputs_on_a_read_only_folder_are_skipped_as_before(tiny_weights: Path, tmp_path: Path) -> None:
    """A resumed run with nothing left to write needs no write access (an archive mounted read-only afterwards)."""
    src = _photos(tmp_path / "in")
    done = tmp_path / "done"
    done.mkdir()
    for name in ("p0.png", "p1.png"):
        shutil.copy(src / name, done / name)  # any image will do: it only has to exist
    result = _run_with_read_only(done, "restore", str(src), str(done), "--weights", str(tiny_weights), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stdout + result.stderr


def test_a_file_where_the_output_folder_should_be(tiny_weights: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from oldphoto.cli import app

    src = _photos(tmp_path / "in") / "p0.png"
    (tmp_path / "blocker").write_text("a file where a folder should be")
    out = tmp_path / "blocker" / "sub" / "out.png"
    result = CliRunner().invoke(app, ["restore", str(src), str(out), "--weights", str(tiny_weights)], env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert result.output == (
        f"error: {out.parent}: outputs cannot be written there ({tmp_path / 'blocker'} is not a folder); nothing was restored\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "in"]


def test_an_unwritable_comparison_folder_is_found_too(tiny_weights: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from oldphoto.cli import app

    src = _photos(tmp_path / "in")
    (tmp_path / "cmp").write_text("not a folder")
    result = CliRunner().invoke(
        app, ["restore", str(src), str(tmp_path / "out"), "--comparison", str(tmp_path / "cmp" / "x"), "--weights", str(tiny_weights)],
        env={"COLUMNS": "400"},
    )
    assert result.exit_code == 2 and f"error: {tmp_path / 'cmp' / 'x'}: outputs cannot be written there" in result.output
    assert not (tmp_path / "out").exists()


def test_the_check_leaves_nothing_behind(tmp_path: Path) -> None:
    from oldphoto.fsutil import probe_writable

    (tmp_path / "here").mkdir()
    probe_writable(tmp_path / "here")
    probe_writable(tmp_path / "not" / "yet")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["here"]
