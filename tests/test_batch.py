"""Batch planning and running with a stand-in restorer: trees, formats, skips, failures, atomicity."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from oldphoto import batch
from oldphoto.errors import UsageError, WeightsError


@dataclass
class FakeResult:
    image: Image.Image
    mode: str
    mask: Image.Image | None
    detected_mask: Image.Image | None
    seconds: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)


class FakeRestorer:
    """Inverts the photo; 'detects' a vertical stripe; records what it was given."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def restore_photo(self, photo: Any, mask: Any = None, **kwargs: Any) -> FakeResult:
        image = photo.image
        self.calls.append({"size": image.size, "image_mode": image.mode, "mask": mask, **kwargs})
        detected = None
        if mask is None and kwargs.get("detect_scratches"):
            detected = Image.new("L", image.size, 0)
            detected.paste(255, (0, 0, 2, image.height))
        used = mask if mask is not None else detected
        return FakeResult(ImageOps.invert(image), "scratch" if used is not None else "quality", used, detected)


def _photo(path: Path, size: tuple[int, int] = (24, 16), colour: Any = (200, 100, 50), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)
    return path


def _tree(root: Path) -> Path:
    _photo(root / "a.jpg")
    _photo(root / "b.gif", colour=3, mode="P")
    _photo(root / "sub" / "deeper" / "c.png", size=(10, 30))
    _photo(root / ".hidden.png")
    (root / "notes.txt").write_text("not a photo")
    return root


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_plan_keeps_the_tree_and_picks_formats(tmp_path: Path) -> None:
    src = _tree(tmp_path / "in")
    jobs = batch.plan(src, tmp_path / "out", recursive=True)
    got = [(str(j.source.relative_to(src)), str(j.output.relative_to(tmp_path / "out")), j.format) for j in jobs]
    assert got == [("a.jpg", "a.jpg", "JPEG"), ("b.gif", "b.png", "PNG"), ("sub/deeper/c.png", "sub/deeper/c.png", "PNG")]
    flat = batch.plan(src, tmp_path / "out", format="tif")
    assert [j.output.name for j in flat] == ["a.tif", "b.tif"] and {j.format for j in flat} == {"TIFF"}


def test_plan_single_file_into_a_folder_or_a_file(tmp_path: Path) -> None:
    src = _photo(tmp_path / "scan 1é.bmp")
    (job,) = batch.plan(src, tmp_path / "restored")
    assert job.output == tmp_path / "restored" / "scan 1é.bmp" and job.format == "BMP"
    (job,) = batch.plan(src, tmp_path / "x.webp")
    assert job.output == tmp_path / "x.webp" and job.format == "WEBP"
    with pytest.raises(UsageError, match="disagrees with the output's extension"):
        batch.plan(src, tmp_path / "x.png", format="jpg")
    with pytest.raises(UsageError, match=r"cannot write '\.gif' files"):
        batch.plan(src, tmp_path / "x.gif")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("same_folder", "OUT must be a different folder from IN"),
        ("out_is_file", "OUT must be a folder"),
        ("nested_onto_input", "refusing to write over the input photo"),
        ("mask_is_output", "refusing to write over the input mask"),
        ("no_photos", "no photos found .add --recursive"),
        ("bad_format", "cannot write format 'gif'"),
        ("comparison_is_output", "would be written both as the output and as the comparison"),
    ],
)
def test_plan_usage_errors(tmp_path: Path, setup: str, message: str) -> None:
    src = tmp_path / "in"
    _photo(src / "a.png")
    kwargs: dict[str, Any] = {}
    dest: Path = tmp_path / "out"
    if setup == "same_folder":
        dest = src
    elif setup == "out_is_file":
        dest.write_text("x")
    elif setup == "nested_onto_input":
        _photo(src / "in" / "a.png")  # restoring tmp/in into tmp/ writes in/a.png's output onto tmp/in/a.png
        dest, kwargs = tmp_path, {"recursive": True}
    elif setup == "mask_is_output":
        src, dest, kwargs = src / "a.png", tmp_path / "m.png", {"mask": _photo(tmp_path / "m.png", mode="L", colour=0)}
    elif setup == "no_photos":
        src = tmp_path / "empty"
        _photo(src / "sub" / "x.png")
    elif setup == "comparison_is_output":
        kwargs = {"comparison": dest}
    elif setup == "bad_format":
        kwargs = {"format": "gif"}
    with pytest.raises(UsageError, match=message):
        batch.plan(src, dest, **kwargs)


def test_two_photos_with_one_output_fail_alone(tmp_path: Path) -> None:
    src = tmp_path / "in"
    _photo(src / "a.jpg")
    _photo(src / "a.png")
    _photo(src / "b.png")
    jobs = batch.plan(src, tmp_path / "out", format="png")
    assert [j.error is None for j in jobs] == [True, False, True]
    assert "a.png is also the output of" in (jobs[1].error or "")
    records = batch.run(jobs, FakeRestorer, batch.Settings())
    assert [r.status for r in records] == ["restored", "failed", "restored"]
    assert _files(tmp_path / "out") == ["a.png", "b.png"]


def test_masks_matched_by_stem_in_the_same_subfolder_then_the_top(tmp_path: Path) -> None:
    src = tmp_path / "in"
    for rel in ("a.jpg", "sub/b.jpg", "sub/c.jpg", "d.jpg"):
        _photo(src / rel)
    masks = tmp_path / "masks"
    for rel in ("a.png", "sub/b.bmp", "c.png", "d.png", "d.jpg"):
        _photo(masks / rel, mode="L", colour=255)
    jobs = {j.source.stem: j for j in batch.plan(src, tmp_path / "out", recursive=True, mask=masks)}
    assert jobs["a"].mask == masks / "a.png"
    assert jobs["b"].mask == masks / "sub" / "b.bmp"
    assert jobs["c"].mask == masks / "c.png"
    assert jobs["d"].mask is None and "several masks match" in (jobs["d"].error or "")


def test_run_restores_skips_and_goes_on_past_a_bad_file(tmp_path: Path) -> None:
    src = _tree(tmp_path / "in")
    (src / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "out"
    _photo(out / "a.jpg", colour=(1, 2, 3))  # done by an earlier run
    before = (out / "a.jpg").read_bytes()
    fake = FakeRestorer()
    records = batch.run(batch.plan(src, out, recursive=True), lambda: fake, batch.Settings())
    assert [(Path(r.input).name, r.status) for r in records] == [
        ("a.jpg", "skipped"), ("b.gif", "restored"), ("broken.jpg", "failed"), ("c.png", "restored"),
    ]
    assert "broken.jpg: cannot" in (records[2].error or "") and "\n" not in (records[2].error or "")
    assert (out / "a.jpg").read_bytes() == before
    assert _files(out) == ["a.jpg", "b.png", "sub/deeper/c.png"]
    with Image.open(out / "sub" / "deeper" / "c.png") as c:
        assert c.size == (10, 30) and c.mode == "RGB" and c.getpixel((0, 0)) == (55, 155, 205)
    assert records[3].size == [10, 30] and records[3].mode == "quality"
    assert len(fake.calls) == 2


def test_resume_never_builds_a_restorer_when_all_is_done(tmp_path: Path) -> None:
    src = _tree(tmp_path / "in")
    jobs = batch.plan(src, tmp_path / "out")
    batch.run(jobs, FakeRestorer, batch.Settings())
    assert not batch.needs_work(jobs, overwrite=False) and batch.needs_work(jobs, overwrite=True)

    def forbidden() -> FakeRestorer:
        raise AssertionError("a restorer was built for a finished batch")

    assert {r.status for r in batch.run(jobs, forbidden, batch.Settings())} == {"skipped"}
    assert [r.status for r in batch.run(jobs, FakeRestorer, batch.Settings(overwrite=True))] == ["restored"] * 2


def test_an_interrupted_save_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _tree(tmp_path / "in")
    real_save = Image.Image.save
    calls = {"n": 0}

    def save_then_interrupt(self: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        real_save(self, fp, *args, **kwargs)
        if calls["n"] == 2:
            raise KeyboardInterrupt  # after the bytes are on disk, before the rename

    monkeypatch.setattr(Image.Image, "save", save_then_interrupt)
    jobs = batch.plan(src, tmp_path / "out", recursive=True)
    with pytest.raises(KeyboardInterrupt):
        batch.run(jobs, FakeRestorer, batch.Settings())
    # b.png's save was cut: no file and no temp file. c.png's write, queued behind it, may have finished.
    left = _files(tmp_path / "out")
    assert left[0] == "a.jpg" and set(left) <= {"a.jpg", "sub/deeper/c.png"}
    monkeypatch.setattr(Image.Image, "save", real_save)
    records = batch.run(jobs, FakeRestorer, batch.Settings())
    assert [r.status for r in records][:2] == ["skipped", "restored"]
    assert _files(tmp_path / "out") == ["a.jpg", "b.png", "sub/deeper/c.png"]


def test_an_interrupt_while_computing_keeps_the_finished_photos(tmp_path: Path) -> None:
    """Ctrl-C during one photo's networks: the photo before it, still being written behind, lands whole."""
    src = _tree(tmp_path / "in")

    class Interrupted(FakeRestorer):
        def restore_photo(self, photo: Any, mask: Any = None, **kwargs: Any) -> FakeResult:
            if len(self.calls) == 1:
                raise KeyboardInterrupt
            return super().restore_photo(photo, mask, **kwargs)

    restorer = Interrupted()
    jobs = batch.plan(src, tmp_path / "out", recursive=True)
    with pytest.raises(KeyboardInterrupt):
        batch.run(jobs, lambda: restorer, batch.Settings())
    assert _files(tmp_path / "out") == ["a.jpg"]
    with Image.open(tmp_path / "out" / "a.jpg") as out:
        out.load()
        assert out.size == (24, 16)


def test_a_failed_write_fails_its_photo_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes run behind the networks; one that raises turns that photo's record into a failure."""
    src = _tree(tmp_path / "in")
    real_save = Image.Image.save

    def full_disk_for_b(self: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
        if "b.png" in str(fp):
            raise OSError(28, "No space left on device")
        real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", full_disk_for_b)
    seen: list[str] = []
    records = batch.run(batch.plan(src, tmp_path / "out", recursive=True), FakeRestorer, batch.Settings(),
                        on_record=lambda r: seen.append(r.status))
    assert [r.status for r in records] == seen == ["restored", "failed", "restored"]
    assert "No space left on device" in (records[1].error or "") and records[1].mode is None
    assert _files(tmp_path / "out") == ["a.jpg", "sub/deeper/c.png"]


def test_weights_errors_end_the_batch(tmp_path: Path) -> None:
    src = _tree(tmp_path / "in")

    class NoWeights:
        def restore_photo(self, *args: Any, **kwargs: Any) -> None:
            raise WeightsError("w/: no 'quality' model")

    with pytest.raises(WeightsError):
        batch.run(batch.plan(src, tmp_path / "out"), NoWeights, batch.Settings())
    assert not (tmp_path / "out").exists() or _files(tmp_path / "out") == []


def test_masks_saved_masks_and_comparisons(tmp_path: Path) -> None:
    src = tmp_path / "in"
    _photo(src / "a.png", size=(20, 12), mode="L", colour=40)
    _photo(src / "b.png", size=(20, 12))
    masks = tmp_path / "masks"
    Image.new("1", (5, 3), 1).save(_photo(masks / "a.png"))
    fake = FakeRestorer()
    jobs = batch.plan(src, tmp_path / "out", mask=masks, save_mask=tmp_path / "saved", comparison=tmp_path / "cmp")
    records = batch.run(jobs, lambda: fake, batch.Settings())
    assert [r.mode for r in records] == ["scratch", "scratch"]
    given = fake.calls[0]["mask"]
    assert given.mode == "L" and given.size == (20, 12) and set(np.unique(np.asarray(given))) == {255}
    assert fake.calls[0]["image_mode"] == "L" and fake.calls[1]["detect_scratches"] is True
    assert _files(tmp_path / "saved") == ["b.png"]  # a had a drawn mask, so nothing was detected for it
    with Image.open(tmp_path / "saved" / "b.png") as saved:
        assert saved.mode == "L" and saved.size == (20, 12)
        assert np.asarray(saved)[:, :2].min() == 255 and np.asarray(saved)[:, 2:].max() == 0
    with Image.open(tmp_path / "cmp" / "a.png") as cmp_a, Image.open(tmp_path / "cmp" / "b.png") as cmp_b:
        # Below an 18-pixel band labelled "before" and "after": the photo, then its restoration.
        assert (cmp_a.size, cmp_a.mode, cmp_b.size, cmp_b.mode) == ((40, 12 + 18), "L", (40, 12 + 18), "RGB")
        assert cmp_a.getpixel((0, 18)) == 40 and cmp_a.getpixel((39, 29)) == 215


def test_side_by_side_scales_the_original_to_the_restored_height() -> None:
    joined = batch.side_by_side(Image.new("RGB", (30, 20)), Image.new("L", (16, 12)))
    assert joined.size == (18 + 16, 18 + 12) and joined.mode == "RGB"


def test_records_are_one_json_line_with_every_field() -> None:
    line = batch.Record(input="é.png", output="o.png", status="failed", error="é.png: empty file").to_json()
    assert "\n" not in line and '"input": "é.png"' in line
    import json

    assert set(json.loads(line)) == {"input", "output", "status", "mode", "model", "size", "seconds", "error", "warnings", "faces"}


def test_tiles_of_a_large_photo_are_reported(tiny_weights: Path, tmp_path: Path) -> None:
    from oldphoto.api import Restorer

    Image.fromarray(np.random.default_rng(1).integers(0, 256, (200, 260, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    jobs = batch.plan(tmp_path / "big.png", tmp_path / "out.png")
    restorer = Restorer(tiny_weights, device="cpu", tile=64, faces=False)
    seen: list[tuple[int, int]] = []
    records = batch.run(jobs, lambda: restorer, batch.Settings(mode="quality"), on_progress=lambda d, t: seen.append((d, t)))
    assert records[0].status == "restored"
    total = seen[-1][1]
    assert total > 1 and seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
