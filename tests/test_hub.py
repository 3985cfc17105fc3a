"""Weights from the Hub, end to end: the real huggingface_hub client against a local Hub server.

The cards are written by the maintainer recipe (``weights/publish.py --dry-run``) for tiny
random weights; the server serves the converted files and a mirror in the published ``.pth``
layout. Nothing of ours is mocked: every test goes through ``hf_hub_download`` over HTTP.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from oldphoto.errors import WeightsError
from oldphoto.fsutil import sha256_file
from oldphoto.weights.cache import cache_root, cached_folder, verify_cached, weights_status
from oldphoto.weights.checkpoint import load_checkpoint
from oldphoto.weights.hubclient import hub_cache_dir
from oldphoto.weights.resolve import resolve_weights
from tests.hub_server import HubServer
from tests.support.recipe import publish, publish_main
from tests.support.tiny import tiny_cards, write_published_layout

OURS = "test/converted"
MIRROR = "leonelhs/zeroscratches"
OFFICIAL = "oldphoto/bringing-old-photos-back-to-life"
PUBLISHED = "databuzzword/bringing-old-photos-back-to-life"
EXTEND = "shaitanzx/FooocusExtend"
MODELS = ("quality", "scratch", "hr", "detector")


@pytest.fixture(scope="session")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Published-layout tiny checkpoints, and the cards + converted files the recipe makes of them."""
    root = tmp_path_factory.mktemp("recipe")
    published = write_published_layout(root / "published", tiny_cards(), seed=3)
    cards_dir = root / "cards"
    cards_dir.mkdir()
    originals = tiny_cards()
    for name, card in originals.items():
        (cards_dir / f"{name}.json").write_text(json.dumps(card, indent=2))
    report = publish(published, repo=OURS, cards_dir=cards_dir, out=root / "out", dry_run=True)
    cards = {n: json.loads((cards_dir / f"{n}.json").read_text()) for n in MODELS}
    for c in cards.values():  # the local server plays the upload a real run would make
        c["sources"][0]["published"] = True
    return {"published": published, "out": root / "out", "cards": cards, "originals": originals, "report": report}


def _files(folder: Path, names: tuple[str, ...] = MODELS) -> dict[str, bytes]:
    return {f"{n}.{ext}": (folder / f"{n}.{ext}").read_bytes() for n in names for ext in ("safetensors", "json")}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HF_HOME with nothing cached and no offline/override/token settings."""
    for var in ("OLDPHOTO_CACHE", "OLDPHOTO_REPO", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN",
                "HUGGING_FACE_HUB_TOKEN", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return tmp_path / "hf"


@pytest.fixture
def hub(recipe: dict[str, Any], env: Path, monkeypatch: pytest.MonkeyPatch):
    """The local Hub: our converted repo (quality, scratch only, as if hr/detector were not yet
    published) and the published-layout mirror; HF_ENDPOINT points at it."""
    with HubServer(lifetime=60) as server:
        server.add_commit(OURS, _files(recipe["out"], ("quality", "scratch")))
        server.add_commit(MIRROR, _tree(recipe["published"]))
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def card(recipe: dict[str, Any], name: str) -> dict[str, Any]:
    return copy.deepcopy(recipe["cards"][name])


def _file_requests(server: HubServer, repo: str | None = None) -> list[str]:
    return server.files_requested(repo)


def _source(c: dict[str, Any], repo: str) -> dict[str, Any]:
    return next(s for s in c["sources"] if s["repo"] == repo)


# ---- the recipe --------------------------------------------------------------------------


def test_publish_dry_run_pins_the_sha256_of_every_converted_file(recipe: dict[str, Any], tmp_path: Path) -> None:
    out = recipe["out"]
    for name in MODELS:
        written, original = recipe["cards"][name], recipe["originals"][name]
        ours = written["sources"][0]
        assert ours["kind"] == "oldphoto" and ours["repo"] == OURS and ours["revision"] is None
        assert set(ours["files"]) == {f"{name}.safetensors", f"{name}.json"}
        for fname, info in ours["files"].items():
            assert info == {"sha256": sha256_file(out / fname), "size": (out / fname).stat().st_size}
        assert written["networks"] == original["networks"] and written["pipeline"] == original["pipeline"]
        assert written["sources"][1:] == original["sources"][1:]
    assert [s["repo"] for s in recipe["cards"]["hr"]["sources"]] == [OURS, PUBLISHED, MIRROR, EXTEND]
    mirror = _source(recipe["cards"]["hr"], MIRROR)
    assert mirror["repo"] == MIRROR and all(v["sha256"] is None for v in mirror["files"].values())
    assert recipe["report"].published["detection/FT_Epoch_latest.pt"] == sha256_file(
        recipe["published"] / "detection/FT_Epoch_latest.pt"
    )

    # The command line writes the hashes of what it converted.
    again = tmp_path / "cards"
    again.mkdir()
    for name, c in recipe["originals"].items():
        (again / f"{name}.json").write_text(json.dumps(c))
    rc = publish_main([str(recipe["published"]), "--repo", OURS, "--cards", str(again), "--out", str(tmp_path / "o"), "--dry-run"])
    assert rc == 0
    for name in MODELS:
        ours = json.loads((again / f"{name}.json").read_text())["sources"][0]
        files = ours["files"]
        assert ours["published"] is False  # a dry run uploads nothing, so downloads still skip it
        assert {f: v["sha256"] for f, v in files.items()} == {f: sha256_file(tmp_path / "o" / f) for f in files}


# ---- download, cache, offline ------------------------------------------------------------


def test_first_run_downloads_and_verifies_then_the_cache_serves_without_network(
    recipe: dict[str, Any], hub: HubServer, env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = resolve_weights("quality", card=card(recipe, "quality"))
    assert folder.is_relative_to(env / "oldphoto")
    assert (folder / "quality.safetensors").read_bytes() == (recipe["out"] / "quality.safetensors").read_bytes()
    record = json.loads((folder / "download.json").read_text())
    assert record["verified"] is True and record["commit"] == hub.repos[OURS].refs["main"]
    assert record["files"]["quality.safetensors"]["sha256"] == recipe["cards"]["quality"]["sources"][0]["files"]["quality.safetensors"]["sha256"]
    assert _file_requests(hub) == ["quality.json", "quality.safetensors"]  # only what the mode needs
    assert "unverified" not in capsys.readouterr().err
    _, tensors = load_checkpoint(folder, "quality")
    _, expected = load_checkpoint(recipe["out"], "quality")
    assert tensors.keys() == expected.keys() and all(torch.equal(tensors[k], expected[k]) for k in tensors)

    seen = len(hub.log)
    hub.stop()
    assert resolve_weights("quality", card=card(recipe, "quality")) == folder
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_weights("quality", card=card(recipe, "quality")) == folder
    assert len(hub.log) == seen

    # Our cache gone but the Hub cache warm: offline still works, re-verified from the blobs.
    import shutil

    shutil.rmtree(env / "oldphoto")
    again = resolve_weights("quality", card=card(recipe, "quality"))
    assert json.loads((again / "download.json").read_text())["verified"] is True
    assert len(hub.log) == seen


def test_offline_with_a_cold_cache_fails_with_one_clear_message(
    recipe: dict[str, Any], hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as info:
        resolve_weights("hr", card=card(recipe, "hr"))
    message = str(info.value)
    assert "\n" not in message and message.startswith("hr: not in the cache and HF_HUB_OFFLINE is set")
    assert "hr.safetensors, hr.json from test/converted" in message
    assert "restoration/VAE_A_quality/latest_net_G.pth" in message and MIRROR in message
    assert "'oldphoto weights download hr'" in message and "'oldphoto weights import-official" in message
    assert hub.log == []


def test_a_corrupted_file_on_the_server_is_caught_and_nothing_bad_stays(
    recipe: dict[str, Any], hub: HubServer, env: Path
) -> None:
    hub.fault(OURS, "quality.safetensors", "corrupt")
    with pytest.raises(WeightsError, match=r"test/converted/quality.safetensors: sha256 mismatch \(expected [0-9a-f]{64}, got [0-9a-f]{64}\); the download was deleted"):
        resolve_weights("quality", card=card(recipe, "quality"))
    assert cached_folder("quality", card=card(recipe, "quality")) is None
    blobs = hub_cache_dir() / "models--test--converted" / "blobs"
    good = hashlib.sha256((recipe["out"] / "quality.safetensors").read_bytes()).hexdigest()
    assert not (blobs / good).exists() and not list(blobs.glob("*.incomplete"))
    assert not list((hub_cache_dir() / "models--test--converted" / "snapshots").rglob("quality.safetensors"))

    hub.faults.clear()
    folder = resolve_weights("quality", card=card(recipe, "quality"))
    assert sha256_file(folder / "quality.safetensors") == good


def test_without_a_published_sha256_corruption_is_still_caught_by_the_metadata_hash(
    recipe: dict[str, Any], hub: HubServer
) -> None:
    unpinned = card(recipe, "quality")
    for info in unpinned["sources"][0]["files"].values():
        info["sha256"] = None
    hub.fault(OURS, "quality.safetensors", "corrupt")
    with pytest.raises(WeightsError, match="does not match the sha256 in quality.json; the download was deleted"):
        resolve_weights("quality", card=unpinned)
    assert cached_folder("quality", card=unpinned) is None


def test_a_transfer_cut_halfway_is_resumed_with_a_range_request(env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client resumes from the bytes it already holds (it hands them over in DOWNLOAD_CHUNK_SIZE
    chunks, so the file must be larger than one chunk to be resumed rather than restarted)."""
    from huggingface_hub import constants

    from oldphoto.weights.checkpoint import save_checkpoint

    chunk = constants.DOWNLOAD_CHUNK_SIZE
    save_checkpoint(tmp_path / "big", "big", {"pad": torch.arange(chunk // 2, dtype=torch.float32)}, {"networks": {}})
    files = {f: (tmp_path / "big" / f).read_bytes() for f in ("big.safetensors", "big.json")}
    big = {
        "name": "big",
        "networks": {},
        "sources": [{"kind": "oldphoto", "repo": OURS, "revision": None, "published": True,
                     "files": {f: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for f, d in files.items()}}],
    }
    with HubServer(lifetime=60) as server:
        server.add_commit(OURS, files)
        server.fault(OURS, "big.safetensors", "cut")
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        folder = resolve_weights("big", card=big, progress=False)
        ranges = [r.headers.get("range") for r in server.requests("cdn", "GET")]
    assert ranges == [None, f"bytes={chunk}-"]
    assert (folder / "big.safetensors").read_bytes() == files["big.safetensors"]
    assert json.loads((folder / "download.json").read_text())["verified"] is True


def test_a_small_file_cut_halfway_is_fetched_again_whole(recipe: dict[str, Any], hub: HubServer) -> None:
    hub.fault(OURS, "scratch.safetensors", "cut")
    folder = resolve_weights("scratch", card=card(recipe, "scratch"), progress=False)
    assert [r.status for r in hub.requests("cdn", "GET")] == [200, 200]
    assert sha256_file(folder / "scratch.safetensors") == sha256_file(recipe["out"] / "scratch.safetensors")


def test_the_server_honours_range_requests(recipe: dict[str, Any], hub: HubServer) -> None:
    import urllib.request

    data = (recipe["out"] / "quality.safetensors").read_bytes()
    head = urllib.request.Request(f"{hub.url}/{OURS}/resolve/main/quality.safetensors", method="HEAD")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    with pytest.raises(urllib.error.HTTPError) as redirect:
        urllib.request.build_opener(NoRedirect).open(head)
    headers = redirect.value.headers
    assert redirect.value.code == 302 and headers["X-Repo-Commit"] == hub.repos[OURS].refs["main"]
    assert headers["X-Linked-Etag"] == f'"{hashlib.sha256(data).hexdigest()}"' and headers["X-Linked-Size"] == str(len(data))
    get = urllib.request.Request(headers["Location"], headers={"Range": "bytes=100-"})
    with urllib.request.urlopen(get) as response:
        assert response.status == 206 and response.headers["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
        assert response.read() == data[100:]


def test_a_download_cut_off_halfway_leaves_nothing_a_later_run_would_load(recipe: dict[str, Any], hub: HubServer) -> None:
    hub.fault(OURS, "scratch.safetensors", "cut-dead")
    with pytest.raises(WeightsError, match=r"scratch.safetensors: download failed, nothing was kept"):
        resolve_weights("scratch", card=card(recipe, "scratch"), progress=False)
    assert cached_folder("scratch", card=card(recipe, "scratch")) is None
    repo_cache = hub_cache_dir() / "models--test--converted"
    assert not list(repo_cache.rglob("scratch.safetensors")) and not list(repo_cache.rglob("*.incomplete"))
    assert not list(cache_root().rglob("scratch.safetensors"))

    hub.faults.clear()
    folder = resolve_weights("scratch", card=card(recipe, "scratch"))
    assert json.loads((folder / "download.json").read_text())["verified"] is True


def test_a_process_killed_mid_download_leaves_nothing_loadable(recipe: dict[str, Any], hub: HubServer, tmp_path: Path) -> None:
    hub.fault(OURS, "scratch.safetensors", "stall")
    card_path = tmp_path / "scratch-card.json"
    card_path.write_text(json.dumps(card(recipe, "scratch")))
    code = (
        "import json,sys; from oldphoto.weights.resolve import resolve_weights; "
        "resolve_weights('scratch', card=json.load(open(sys.argv[1])), progress=False)"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(card_path)], env=dict(os.environ), stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not hub.requests("cdn", "GET") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hub.requests("cdn", "GET"), "the child never started the download"
        time.sleep(0.2)
    finally:
        child.kill()
        child.wait(10)
    assert cached_folder("scratch", card=card(recipe, "scratch")) is None
    assert not list((hub_cache_dir() / "models--test--converted").rglob("scratch.safetensors"))

    hub.faults.clear()
    folder = resolve_weights("scratch", card=card(recipe, "scratch"))
    assert sha256_file(folder / "scratch.safetensors") == sha256_file(recipe["out"] / "scratch.safetensors")


def test_a_wrong_revision_fails_clearly(recipe: dict[str, Any], hub: HubServer) -> None:
    with pytest.raises(WeightsError) as info:
        resolve_weights("quality", card=card(recipe, "quality"), revision="v9.9")
    assert str(info.value) == "test/converted: revision 'v9.9' not found (check --revision or the model card)"
    pinned = card(recipe, "quality")
    pinned["sources"][0]["revision"] = "0" * 40
    with pytest.raises(WeightsError, match=f"revision '{'0' * 40}' not found"):
        resolve_weights("quality", card=pinned)
    assert not cache_root().exists() or not list(cache_root().rglob("download.json"))


def test_a_pinned_revision_is_downloaded_and_cached_apart_from_main(recipe: dict[str, Any], hub: HubServer) -> None:
    first = hub.repos[OURS].refs["main"]
    hub.add_commit(OURS, {"quality.safetensors": b"a later, different upload"})
    pinned = card(recipe, "quality")
    pinned["sources"][0]["revision"] = first
    folder = resolve_weights("quality", card=pinned)
    assert folder.name.endswith(f"@{first}")
    assert json.loads((folder / "download.json").read_text())["commit"] == first


# ---- the published-layout mirror --------------------------------------------------------


def test_a_published_layout_mirror_is_imported_on_the_fly_like_a_local_import(
    recipe: dict[str, Any], hub: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from oldphoto.weights.importer import import_official

    for name, files in (("hr", 3), ("detector", 1)):
        hub.log.clear()
        folder = resolve_weights(name, card=card(recipe, name))
        assert folder.name == f"published--{MIRROR.replace('/', '--')}@main"
        requested = _file_requests(hub, OURS) + _file_requests(hub, MIRROR)
        assert [p for p in requested if not p.endswith((".pth", ".pt"))] == [f"{name}.safetensors"]  # ours lacks it
        mirror_files = [p for p in requested if p.endswith((".pth", ".pt"))]
        assert sorted(mirror_files) == sorted({s["source"] for s in recipe["cards"][name]["networks"].values()})
        assert len(mirror_files) == files
        local = import_official(recipe["published"], tmp_path / "local", models=[name], cards=tiny_cards())
        meta, tensors = load_checkpoint(folder, name)
        local_meta, expected = load_checkpoint(local.imported[name].parent, name)
        assert tensors.keys() == expected.keys() and all(torch.equal(tensors[k], expected[k]) for k in tensors)
        assert meta["networks"] == local_meta["networks"]
        assert json.loads((folder / "download.json").read_text())["verified"] is False
    err = capsys.readouterr().err
    assert err.count("hr: unverified") == 1 and err.count("detector: unverified") == 1

    resolve_weights("hr", card=card(recipe, "hr"))
    assert "unverified" not in capsys.readouterr().err  # reported once, at download


def test_a_pinned_mirror_file_that_differs_is_refused(recipe: dict[str, Any], hub: HubServer) -> None:
    pinned = card(recipe, "detector")
    _source(pinned, MIRROR)["files"]["detection/FT_Epoch_latest.pt"]["sha256"] = "ab" * 32
    with pytest.raises(WeightsError, match=r"leonelhs/zeroscratches/detection/FT_Epoch_latest.pt: sha256 mismatch"):
        resolve_weights("detector", card=pinned)
    assert cached_folder("detector", card=pinned) is None


# ---- overrides, tokens, status, command line --------------------------------------------


def test_a_private_fork_needs_the_token_and_the_token_stays_on_the_hub(
    recipe: dict[str, Any], hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_commit("me/private-fork", _files(recipe["out"], ("quality",)), token="hf_secret")
    monkeypatch.setenv("OLDPHOTO_REPO", "me/private-fork")
    with pytest.raises(WeightsError, match=r"me/private-fork: repository not found or private \(set HF_TOKEN"):
        resolve_weights("quality", card=card(recipe, "quality"))
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    folder = resolve_weights("quality", card=card(recipe, "quality"))
    assert "me--private-fork@main" in folder.name
    assert json.loads((folder / "download.json").read_text())["verified"] is False  # a fork: nothing to check against
    assert any(r.headers.get("authorization") == "Bearer hf_secret" for r in hub.requests("hub"))
    assert not any("authorization" in r.headers for r in hub.requests("cdn"))


def test_weights_status_and_verify(recipe: dict[str, Any], hub: HubServer, tmp_path: Path) -> None:
    cards = {n: card(recipe, n) for n in MODELS}
    folder = resolve_weights("quality", card=cards["quality"])
    rows = {r["name"]: r for r in weights_status(cards=cards)}
    assert rows["quality"]["present"] is True and rows["quality"]["where"] == "cache"
    assert rows["quality"]["verified"] is True and rows["quality"]["path"] == str(folder)
    assert rows["quality"]["size"] == sum((folder / f).stat().st_size for f in ("quality.safetensors", "quality.json"))
    assert rows["hr"]["present"] is False and rows["hr"]["sources"] == [
        f"{OURS} (oldphoto)", f"{PUBLISHED}/Global/checkpoints (published)", f"{MIRROR} (published)",
        f"{EXTEND}/old_photo/global/checkpoints (published)",
    ]
    assert verify_cached("quality", card=cards["quality"]) == (folder, True, "verified")

    data = bytearray((folder / "quality.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / "quality.safetensors").unlink()  # a hard link to the Hub blob: replace, do not write through
    (folder / "quality.safetensors").write_bytes(bytes(data))
    ok = verify_cached("quality", card=cards["quality"])
    assert ok[1] is False and "does not match the sha256 recorded in quality.json" in ok[2]


def test_source_order_skips_our_repository_until_it_is_published(monkeypatch: pytest.MonkeyPatch) -> None:
    from oldphoto.weights.cards import load_card
    from oldphoto.weights.sources import effective_sources, repo_path, required_files

    monkeypatch.delenv("OLDPHOTO_REPO", raising=False)
    hr = load_card("hr")
    assert hr["sources"][0]["repo"] == OFFICIAL and hr["sources"][0]["published"] is False
    order = lambda c, **kw: [(s["repo"], s.get("revision")) for s in effective_sources(c, **kw)]  # noqa: E731
    assert order(hr) == [(PUBLISHED, None), (MIRROR, None), (EXTEND, None)]
    assert order(hr, revision="abc") == [(PUBLISHED, "abc"), (MIRROR, None), (EXTEND, None)]
    assert order(hr, repo=MIRROR) == [(MIRROR, None), (PUBLISHED, None), (EXTEND, None)]  # a card's own source, moved first
    fork = effective_sources(hr, repo="me/fork")
    assert [(s["repo"], s["kind"]) for s in fork] == [
        ("me/fork", "oldphoto"), (PUBLISHED, "published"), (MIRROR, "published"), (EXTEND, "published")
    ]
    monkeypatch.setenv("OLDPHOTO_REPO", OFFICIAL)
    assert order(hr) == [(OFFICIAL, None), (PUBLISHED, None), (MIRROR, None), (EXTEND, None)]  # named by the user: tried
    monkeypatch.delenv("OLDPHOTO_REPO")
    hr["sources"][0]["published"] = True
    assert order(hr) == [(OFFICIAL, None), (PUBLISHED, None), (MIRROR, None), (EXTEND, None)]
    for name in ("quality", "scratch", "hr", "detector", "face256", "face512"):
        published = next(s for s in load_card(name)["sources"] if s["repo"] == PUBLISHED)
        assert published["subfolder"] == ("Face_Enhancement/checkpoints" if name.startswith("face") else "Global/checkpoints")
        assert all(v == {"sha256": None, "size": None} for v in published["files"].values())  # never a guessed hash
        # The last source of every card: the same release under old_photo/, the same files below its subfolders.
        card = load_card(name)
        extend = card["sources"][-1]
        assert extend["repo"] == EXTEND and extend["kind"] == "published" and extend["revision"] is None
        assert extend["subfolder"] == f"old_photo/{'face' if name.startswith('face') else 'global'}/checkpoints"
        assert extend["files"] == published["files"]
        assert required_files(name, card, extend) == required_files(name, card, published) == sorted(published["files"])
        assert [repo_path(extend, f) for f in required_files(name, card, extend)] == [
            f"{extend['subfolder']}/{f}" for f in sorted(published["files"])
        ]
