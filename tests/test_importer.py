"""import-official: safe pickle loading, strict key and shape checks, atomic output."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from oldphoto.cli import app
from oldphoto.errors import WeightsError
from oldphoto.weights.importer import import_official
from tests.support.tiny import tiny_cards, write_published_layout

QUALITY_MAPPING = "restoration/mapping_quality/latest_net_mapping_net.pth"


class Payload:
    """An object whose unpickling would run code (it creates a marker file)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: D105
        return (os.makedirs, (self.marker,))


@pytest.fixture()
def published(tmp_path: Path) -> Path:
    return write_published_layout(tmp_path / "checkpoints", tiny_cards())


def _edit(path: Path, change) -> None:
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def _import(src: Path, dest: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["weights", "import-official", str(src), str(dest), *extra], env={"COLUMNS": "400"})
    return result.exit_code, result.output


def test_imports_every_mode_and_roundtrips_tensors(published: Path, tmp_path: Path) -> None:
    report = import_official(published, tmp_path / "out", cards=tiny_cards())
    assert sorted(report.imported) == ["detector", "face256", "face512", "hr", "quality", "scratch"]
    assert report.missing == {} and report.warnings == []
    ours = load_file(tmp_path / "out" / "quality.safetensors")
    theirs = torch.load(published / QUALITY_MAPPING, weights_only=True)
    for key, value in theirs.items():
        assert torch.equal(ours["mapping." + key[len("model."):]], value)


def test_accepts_folder_containing_checkpoints(published: Path, tmp_path: Path) -> None:
    report = import_official(published.parent, tmp_path / "out", cards=tiny_cards(), models=["quality"])
    assert list(report.imported) == ["quality"]


def test_reports_modes_whose_files_are_absent(published: Path, tmp_path: Path) -> None:
    (published / QUALITY_MAPPING).unlink()
    report = import_official(published, tmp_path / "out", cards=tiny_cards())
    assert "quality" not in report.imported and "scratch" in report.imported
    assert QUALITY_MAPPING in report.missing["quality"]


def test_refuses_pickle_that_carries_code(published: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with open(published / QUALITY_MAPPING, "wb") as f:
        pickle.dump({"model.0.weight": Payload(str(marker))}, f)
    with pytest.raises(WeightsError, match=f"{QUALITY_MAPPING}: refused: the pickle holds objects other than tensors"):
        import_official(published, tmp_path / "out", cards=tiny_cards())
    assert not marker.exists(), "the pickle's code ran"
    assert not (tmp_path / "out").exists()


def test_cli_refuses_pickle_that_carries_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    detector = tmp_path / "src" / "detection" / "FT_Epoch_latest.pt"
    detector.parent.mkdir(parents=True)
    torch.save({"model_state": Payload(str(marker))}, detector)
    code, output = _import(tmp_path / "src", tmp_path / "out")
    assert code == 1
    assert "detection/FT_Epoch_latest.pt: refused" in output
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_refuses_missing_key_and_writes_nothing(published: Path, tmp_path: Path) -> None:
    _edit(published / QUALITY_MAPPING, lambda s: s.pop("model.3.weight"))
    with pytest.raises(WeightsError, match=r"missing keys: model\.3\.weight"):
        import_official(published, tmp_path / "out", cards=tiny_cards())
    assert not (tmp_path / "out").exists()


def test_refuses_wrong_shape_naming_the_key(published: Path, tmp_path: Path) -> None:
    _edit(published / QUALITY_MAPPING, lambda s: s.__setitem__("model.0.bias", torch.zeros(3)))
    with pytest.raises(WeightsError, match=r"wrong shapes: model\.0\.bias \(3,\) \(expected \(16,\)\)"):
        import_official(published, tmp_path / "out", cards=tiny_cards())
    assert not (tmp_path / "out").exists()


def test_extra_key_warns_and_fails_under_strict(published: Path, tmp_path: Path) -> None:
    _edit(published / QUALITY_MAPPING, lambda s: s.__setitem__("model.99.weight", torch.zeros(1)))
    report = import_official(published, tmp_path / "out", cards=tiny_cards(), models=["quality"])
    assert list(report.imported) == ["quality"]
    assert any("unexpected keys: model.99.weight" in w for w in report.warnings)
    with pytest.raises(WeightsError, match="refused under --strict"):
        import_official(published, tmp_path / "strict", cards=tiny_cards(), models=["quality"], strict=True)
    assert not (tmp_path / "strict").exists()


def test_module_prefixed_and_wrapped_state_dicts_import(published: Path, tmp_path: Path) -> None:
    path = published / QUALITY_MAPPING
    state = torch.load(path, weights_only=True)
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, path)
    report = import_official(published, tmp_path / "out", cards=tiny_cards(), models=["quality"])
    assert list(report.imported) == ["quality"]
    ours = load_file(tmp_path / "out" / "quality.safetensors")
    assert torch.equal(ours["mapping.0.weight"], state["model.0.weight"])


def test_checkpoint_metadata_records_sources(published: Path, tmp_path: Path) -> None:
    import json

    from oldphoto.fsutil import sha256_file

    import_official(published, tmp_path / "out", cards=tiny_cards(), models=["hr"])
    meta = json.loads((tmp_path / "out" / "hr.json").read_text())
    files = {s["file"]: s["sha256"] for s in meta["sources"]}
    assert files["restoration/mapping_Patch_Attention/latest_net_mapping_net.pth"] == sha256_file(
        published / "restoration/mapping_Patch_Attention/latest_net_mapping_net.pth"
    )
    assert meta["weights_sha256"] == sha256_file(tmp_path / "out" / "hr.safetensors")
    assert meta["networks"]["mapping"]["arch"] == "mapping_patch_attention"


def test_cli_reports_nothing_importable(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, output = _import(tmp_path / "empty", tmp_path / "out")
    assert code == 1
    assert "no model could be imported" in output


def test_conversion_is_byte_reproducible(published: Path, tmp_path: Path) -> None:
    from oldphoto.fsutil import sha256_file

    for out in ("a", "b"):
        import_official(published, tmp_path / out, cards=tiny_cards(), models=["scratch"])
    assert sha256_file(tmp_path / "a" / "scratch.safetensors") == sha256_file(tmp_path / "b" / "scratch.safetensors")
