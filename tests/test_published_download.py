"""A fresh machine's first run: the published release on the Hub, with the real client and the real CLI.

The local Hub serves the published release repository laid out as on the Hub
(``Global/checkpoints/...``, ``Face_Enhancement/checkpoints/...``). The shipped cards are used
with tiny network configs (the files are tiny published-format ``.pth`` files), so every step is
the real one: ``hf_hub_download`` over HTTP, conversion by the importer, our cache, the restore.
"""

from __future__ import annotations

import copy
import json
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from oldphoto.errors import WeightsError
from oldphoto.fsutil import sha256_file
from oldphoto.errors import human_bytes
from tests.hub_server import HubServer
from tests.support.published import (
    EXTEND,
    LANDMARKS,
    MIRROR,
    OFFICIAL,
    PUBLISHED,
    extend_tree,
    in_extend,
    mirror_tree,
    needs,
    published_tree,
)
from tests.support.tiny import tiny_cards, write_published_layout

PHOTOS = Path(__file__).resolve().parent / "data" / "photos"
FACE_FILE = "Face_Enhancement/checkpoints/Setting_9_epoch_100/latest_net_G.pth"


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Tiny published-format checkpoints of every model, and the cards they fit."""
    root = tmp_path_factory.mktemp("release")
    cards = tiny_cards()
    published = write_published_layout(root / "published", cards, seed=5)
    return {"root": published, "cards": cards, "tree": published_tree(published)}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, release: dict[str, Any]) -> Path:
    """An empty HF_HOME, no overrides, and the shipped cards at tiny sizes (their sources as shipped)."""
    for var in ("OLDPHOTO_CACHE", "OLDPHOTO_REPO", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN",
                "HUGGING_FACE_HUB_TOKEN", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    cards = release["cards"]

    def load_card(name: str) -> dict[str, Any]:
        return copy.deepcopy(cards[name])

    # The importer first: it binds cards.load_card when it is imported, so importing it while that
    # is patched would keep the tiny cards in it after this test (and break the parity tests after).
    monkeypatch.setattr("oldphoto.weights.importer.load_card", load_card)
    monkeypatch.setattr("oldphoto.weights.cards.load_card", load_card)
    return tmp_path / "hf"


@pytest.fixture
def hub(release: dict[str, Any], env: Path, monkeypatch: pytest.MonkeyPatch):
    """The local Hub holding the published release repository only; HF_ENDPOINT points at it."""
    with HubServer(lifetime=120) as server:
        server.add_commit(PUBLISHED, release["tree"])
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def _cli(*args: Any) -> Any:
    from oldphoto.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})


def _restore(src: Path, dest: Path, *args: Any) -> Any:
    result = _cli("restore", src, dest, "--device", "cpu", *args)
    assert result.exit_code == 0, result.output
    return result


def _local_weights(release: dict[str, Any], dest: Path) -> Path:
    from oldphoto.weights.importer import import_official

    report = import_official(release["root"], dest, cards=release["cards"])
    assert set(report.imported) == set(release["cards"]), report.missing
    return dest


def _photo(tmp_path: Path, name: str = "scratched_b.png") -> Path:
    photo = tmp_path / "photo.jpg"
    Image.open(PHOTOS / name).convert("RGB").save(photo, quality=95)
    return photo


def _mode_of(result: Any) -> str:
    return json.loads(result.stdout.strip().splitlines()[-1])["mode"]


def test_the_main_job_on_a_fresh_machine(release: dict[str, Any], hub: HubServer, env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photo = _photo(tmp_path)
    first = _restore(photo, tmp_path / "out.png")
    quality = needs(release["cards"]["quality"])
    assert hub.files_requested() == quality  # the three files of quality mode, nothing else, from no other repo
    assert hub.files_requested(PUBLISHED) == quality
    total = human_bytes(sum(len(release["tree"][p]) for p in quality))
    assert f"quality: downloading 3 files ({total}) from {PUBLISHED}@{hub.repos[PUBLISHED].refs['main'][:12]}" in first.stderr

    folder = env / "oldphoto" / "quality" / f"published--{PUBLISHED.replace('/', '--')}@main--Global--checkpoints"
    record = json.loads((folder / "download.json").read_text())
    assert record["commit"] == hub.repos[PUBLISHED].refs["main"] and record["trust"] == "first use"
    assert record["verified"] is False
    assert {f"Global/checkpoints/{f}": v["sha256"] for f, v in record["files"].items()} == {
        p: sha256_file(release["root"] / p.removeprefix("Global/checkpoints/")) for p in quality
    }
    assert "quality: unverified (no published sha256" in first.stderr and record["commit"] in first.stderr

    local = _local_weights(release, tmp_path / "local")
    _restore(photo, tmp_path / "local.png", "--weights", local)
    _assert_same_restoration(tmp_path / "out.png", tmp_path / "local.png", local)

    seen = len(hub.log)
    hub.stop()
    again = _restore(photo, tmp_path / "again.png")
    assert "downloading" not in again.stderr and len(hub.log) == seen
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _restore(photo, tmp_path / "offline.png")
    assert len(hub.log) == seen
    # Our cache gone, the client's warm: converted again offline, from the downloaded files.
    shutil.rmtree(env / "oldphoto")
    _restore(photo, tmp_path / "reconverted.png")
    assert len(hub.log) == seen
    assert json.loads((folder / "download.json").read_text())["commit"] == record["commit"]
    for name in ("again.png", "offline.png", "reconverted.png"):
        assert (tmp_path / name).read_bytes() == (tmp_path / "out.png").read_bytes()


def _mask(tmp_path: Path, photo: Path) -> Path:
    with Image.open(photo) as im:
        mask = Image.new("L", im.size, 0)
    ImageDraw.Draw(mask).line([(10, 20), (200, 180)], fill=255, width=5)
    mask.save(tmp_path / "mask.png")
    return tmp_path / "mask.png"


@pytest.mark.parametrize("option", ["mask", "detect", "hr", "faces"])
def test_each_option_fetches_only_what_it_needs(
    option: str, release: dict[str, Any], hub: HubServer, tmp_path: Path
) -> None:
    cards = release["cards"]
    photo = _photo(tmp_path, "scratched_c.png" if option == "faces" else "scratched_b.png")
    if option == "faces":
        from oldphoto.faces import faces_available

        if not faces_available():
            pytest.skip("the faces extra (dlib-bin, face-recognition-models) is not installed")
    args = {
        "mask": ["--mask", _mask(tmp_path, photo)],
        "detect": ["--detect-scratches"],
        "hr": ["--mode", "hr"],
        "faces": ["--faces", "--mode", "quality"],
    }[option]
    result = _restore(photo, tmp_path / "out.png", "--json", *args)
    mode = _mode_of(result)
    expected = set(needs(cards[mode]))
    if option in ("detect", "hr"):
        expected |= set(needs(cards["detector"]))
    if option == "faces":
        expected.add(FACE_FILE)
    assert {"mask": "scratch", "hr": "hr", "faces": "quality"}.get(option, mode) == mode
    assert hub.files_requested() == sorted(expected)


def test_a_missing_file_falls_through_to_the_next_source_then_fails_naming_repo_and_file(
    release: dict[str, Any], env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oldphoto.weights.resolve import resolve_weights

    detector = "detection/FT_Epoch_latest.pt"
    cards = release["cards"]
    with HubServer(lifetime=60) as server:
        server.add_commit(PUBLISHED, {p: d for p, d in release["tree"].items() if p != f"Global/checkpoints/{detector}"})
        server.add_commit(MIRROR, mirror_tree(release["root"]))
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        folder = resolve_weights("detector", card=cards["detector"], progress=False)
        assert folder.name == f"published--{MIRROR.replace('/', '--')}@main"
        assert server.files_requested(PUBLISHED) == [f"Global/checkpoints/{detector}"]
        assert server.files_requested(MIRROR) == [detector]

        # A source lacking the second of three files: nothing at all is downloaded from it.
        mapping = "restoration/mapping_quality/latest_net_mapping_net.pth"
        server.add_commit(PUBLISHED, {}, keep=False)
        server.add_commit(PUBLISHED, {p: d for p, d in release["tree"].items() if p != f"Global/checkpoints/{mapping}"}, keep=False)
        server.log.clear()
        with pytest.raises(WeightsError) as info:
            resolve_weights("quality", card=cards["quality"], progress=False)
        assert server.requests("cdn") == []
        message = str(info.value)
        assert "\n" not in message and message.startswith("quality: no source could provide it (")
        assert f"{PUBLISHED}@{server.repos[PUBLISHED].refs['main']}: has no Global/checkpoints/{mapping}" in message
        assert "'oldphoto weights download quality'" in message and "import-official" in message

        vae_a = "restoration/VAE_A_quality/latest_net_G.pth"
        server.add_commit(PUBLISHED, {p: d for p, d in release["tree"].items() if p != f"Global/checkpoints/{vae_a}"}, keep=False)
        server.add_commit(MIRROR, {"README.md": b"emptied"}, keep=False)
        with pytest.raises(WeightsError) as info:
            resolve_weights("hr", card=cards["hr"], progress=False)
        message = str(info.value)
        assert (
            f"({PUBLISHED}: has no Global/checkpoints/{vae_a}; {MIRROR}: has no {vae_a}; "
            f"{EXTEND}: repository not found or private (set HF_TOKEN for a private one))"
        ) in message
        assert OFFICIAL not in message  # ours is not published: never asked
        assert server.files_requested(OFFICIAL) == []


def _same_tensors(folder: Path, local: Path, name: str) -> None:
    from oldphoto.weights.checkpoint import load_checkpoint

    meta, tensors = load_checkpoint(folder, name)
    local_meta, expected = load_checkpoint(local, name)
    assert tensors.keys() == expected.keys() and all(tensors[k].equal(expected[k]) for k in tensors)
    assert meta["networks"] == local_meta["networks"]


def test_the_fooocusextend_layout_alone_serves_every_model_converted_like_a_local_import(
    release: dict[str, Any], env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither the release repository nor zeroscratches answers: every model comes from old_photo/..."""
    cards = release["cards"]
    local = _local_weights(release, tmp_path / "local")
    with HubServer(lifetime=120) as server:
        server.add_commit(EXTEND, extend_tree(release["root"]))
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        result = _cli("weights", "download", "--all")
        assert result.exit_code == 0, result.output
        commit = server.repos[EXTEND].refs["main"]
        wanted = sorted({in_extend(p) for name in cards for p in needs(cards[name])})
        assert server.files_requested(EXTEND) == wanted and LANDMARKS[0] not in wanted
        assert server.files_requested(PUBLISHED) and server.files_requested(OFFICIAL) == []
        for name in cards:
            face = name.startswith("face")
            folder = env / "oldphoto" / name / f"published--{EXTEND.replace('/', '--')}@main--old_photo--{'face' if face else 'global'}--checkpoints"
            record = json.loads((folder / "download.json").read_text())
            assert record["repo"] == EXTEND and record["commit"] == commit and record["verified"] is False
            assert sorted(record["files"]) == sorted(p.split("/checkpoints/", 1)[1] for p in needs(cards[name]))
            _same_tensors(folder, local / name if (local / name).is_dir() else local, name)
        assert "face512: downloading 1 file" in result.stderr and f"from {EXTEND}@{commit[:12]}" in result.stderr

        photo = _photo(tmp_path)
        _restore(photo, tmp_path / "hub.png", "--mask", _mask(tmp_path, photo))
        _restore(photo, tmp_path / "local.png", "--mask", tmp_path / "mask.png", "--weights", local)
        # Same pixels; the files' provenance differs by design (each names where its model came from).
        assert np.array_equal(np.asarray(Image.open(tmp_path / "hub.png")), np.asarray(Image.open(tmp_path / "local.png")))
        verify = _cli("weights", "verify", "face512")
        assert verify.exit_code == 0 and f"trusted on first use from {EXTEND}@{commit}" in verify.stdout


def test_a_file_missing_from_the_earlier_sources_falls_through_to_fooocusextend(
    release: dict[str, Any], env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oldphoto.weights.resolve import resolve_weights

    cards, tree = release["cards"], release["tree"]
    detector = "Global/checkpoints/detection/FT_Epoch_latest.pt"
    mapping = "Global/checkpoints/restoration/mapping_quality/latest_net_mapping_net.pth"
    face512 = "Face_Enhancement/checkpoints/FaceSR_512/latest_net_G.pth"
    with HubServer(lifetime=120) as server:
        server.add_commit(PUBLISHED, {p: d for p, d in tree.items() if p not in (detector, mapping, face512)})
        server.add_commit(MIRROR, {p: d for p, d in mirror_tree(release["root"]).items() if not p.startswith("detection/")})
        server.add_commit(EXTEND, extend_tree(release["root"]))
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        extend = EXTEND.replace("/", "--")
        for name, missing, subfolder in (
            ("quality", mapping, "global"), ("detector", detector, "global"), ("face512", face512, "face"),
        ):
            server.log.clear()
            folder = resolve_weights(name, card=cards[name], progress=False)
            assert folder.name == f"published--{extend}@main--old_photo--{subfolder}--checkpoints"
            assert missing in server.files_requested(PUBLISHED)
            assert server.files_requested(EXTEND) == sorted(in_extend(p) for p in needs(cards[name]))
            # Nothing is downloaded from a source that lacks one of the files: one transfer per file, EXTEND's.
            assert len(server.requests("cdn", "GET")) == len(needs(cards[name]))
            assert json.loads((folder / "download.json").read_text())["repo"] == EXTEND
        # What the earlier sources hold is still taken from them: EXTEND is never asked.
        server.log.clear()
        assert resolve_weights("face256", card=cards["face256"], progress=False).name.startswith(f"published--{PUBLISHED.replace('/', '--')}@")
        assert server.files_requested(EXTEND) == []


def test_a_file_changed_on_the_server_under_the_same_commit_is_caught_by_verify(
    release: dict[str, Any], hub: HubServer, env: Path
) -> None:
    result = _cli("weights", "download", "quality")
    assert result.exit_code == 0, result.output
    commit = hub.repos[PUBLISHED].refs["main"]
    listing = _cli("weights", "list")
    lines = listing.stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("quality"))
    assert "verified: unknown" in lines[start] and f"  from {PUBLISHED}@{commit[:12]}" in lines[start + 1: start + 3]
    ok = _cli("weights", "verify", "quality")
    assert ok.exit_code == 0, ok.output
    assert f"quality: intact; trusted on first use from {PUBLISHED}@{commit} (the Hub still serves the same files" in ok.stdout

    changed = "Global/checkpoints/restoration/mapping_quality/latest_net_mapping_net.pth"
    hub.replace_file(PUBLISHED, changed, b"other bytes under the same commit")
    bad = _cli("weights", "verify", "quality")
    assert bad.exit_code == 1
    assert f"{changed} changed on the Hub under the same commit {commit}" in bad.stderr
    assert hub.repos[PUBLISHED].refs["main"] == commit


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_network_the_first_run_fails_fast_naming_the_remedies(env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    photo = _photo(tmp_path)
    start = time.monotonic()
    result = _cli("restore", photo, tmp_path / "out.png", "--device", "cpu", "--model", "published")
    elapsed = time.monotonic() - start
    assert result.exit_code == 1
    assert elapsed < 5, f"took {elapsed:.1f} s"
    err = " ".join(result.stderr.split())
    assert "quality: not in the cache, and the Hub cannot be reached" in err
    assert "'oldphoto weights download quality' on a machine with network" in err and "'oldphoto weights import-official" in err
    assert "Retrying" not in result.output and not (tmp_path / "out.png").exists()


def _assert_same_restoration(downloaded: Path, imported: Path, local: Path) -> None:
    """The same pixels from downloaded and imported weights; the provenance names each model, and the same weights."""
    from oldphoto.provenance import parse, read_xmp

    with Image.open(downloaded) as a, Image.open(imported) as b:
        assert a.tobytes() == b.tobytes()
    told = parse(read_xmp(downloaded)), parse(read_xmp(imported))
    assert told[0]["model"] == "published" and told[1]["model"] == str(local)
    assert told[0]["weights"] == told[1]["weights"]  # converted the same way: the same sha256


def test_a_pinned_revision_is_reproducible(release: dict[str, Any], hub: HubServer, env: Path, tmp_path: Path) -> None:
    from oldphoto.weights.resolve import resolve_weights

    first = hub.repos[PUBLISHED].refs["main"]
    later = write_published_layout(tmp_path / "later", release["cards"], seed=6)
    hub.add_commit(PUBLISHED, published_tree(later))
    folder = resolve_weights("quality", revision=first, progress=False)
    assert folder.name.endswith(f"@{first}--Global--checkpoints")
    assert json.loads((folder / "download.json").read_text())["commit"] == first
    assert all(f"/resolve/{first}/" in r.path for r in hub.requests("hub"))

    photo = _photo(tmp_path)
    seen = len(hub.log)
    _restore(photo, tmp_path / "pinned.png", "--revision", first)
    assert len(hub.log) == seen  # served from the cache
    local = _local_weights(release, tmp_path / "local")
    _restore(photo, tmp_path / "local.png", "--weights", local)
    _assert_same_restoration(tmp_path / "pinned.png", tmp_path / "local.png", local)


def test_download_all_then_copy_the_cache_to_an_offline_machine(
    release: dict[str, Any], hub: HubServer, env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _cli("weights", "download", "--all")
    assert result.exit_code == 0, result.output
    assert sorted(line.split(":")[0] for line in result.stdout.splitlines()) == sorted(release["cards"])
    assert hub.files_requested() == sorted(release["tree"])
    for name in release["cards"]:
        assert f"{name}: downloading " in result.stderr or f"{name}: files already downloaded" in result.stderr
    where = _cli("weights", "path")
    assert where.stdout.strip() == str(env / "oldphoto") and "copy this folder" in where.stderr

    offline = tmp_path / "offline-machine"
    shutil.copytree(env / "oldphoto", offline / "weights")
    hub.stop()
    monkeypatch.setenv("HF_HOME", str(offline / "hf"))
    monkeypatch.setenv("OLDPHOTO_CACHE", str(offline / "weights"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    listing = _cli("weights", "list")
    rows = {ln.split()[0]: ln.split()[1] for ln in listing.stdout.splitlines() if ln.split() and ln.split()[0] in release["cards"]}
    assert rows == {name: "cache" for name in release["cards"]}, listing.stdout
    photo = _photo(tmp_path)
    _restore(photo, tmp_path / "out.png", "--mode", "hr", "--mask", _mask(tmp_path, photo))
