"""Maintainer recipe: convert the published checkpoints, pin them in the model cards, upload.

Run once by a maintainer who has the published ``checkpoints/`` folder and a Hub token with
write access::

    python weights/publish.py ~/checkpoints --repo oldphoto/bringing-old-photos-back-to-life
    python weights/publish.py ~/checkpoints --dry-run      # everything but the upload

It imports every model with the engine's importer (``torch.load(weights_only=True)``), hashes
``NAME.safetensors`` and ``NAME.json``, uploads them in one commit with ``huggingface_hub``, and
writes the repo, the commit id and the sha256 and size of each file into the first source
(kind ``oldphoto``) of each card, and marks it ``published`` (until then downloads skip it). A
dry run writes the sha256s but no revision and leaves it unpublished, because no commit exists.
The published-layout sources are left alone: their bytes are not ours to vouch for (the sha256s
of the ``.pth`` files used are printed, to compare with a mirror by hand).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oldphoto.weights.sources import DEFAULT_REPO

#: The model cards in the source tree (the package ships them; this recipe edits them).
CARDS_DIR = Path(__file__).resolve().parent.parent / "oldphoto" / "weights" / "cards"


@dataclass
class PublishReport:
    """What was converted (name -> {file: {sha256, size}}), the commit, the cards written, what was skipped."""

    out: Path
    files: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    published: dict[str, str] = field(default_factory=dict)
    revision: str | None = None
    cards: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def read_cards(cards_dir: Path) -> dict[str, dict[str, Any]]:
    """Every model card (``*.json`` with format ``oldphoto-card``) in ``cards_dir``, by name."""
    cards = {}
    for path in sorted(cards_dir.glob("*.json")):
        card = json.loads(path.read_text(encoding="utf-8"))
        if card.get("format") == "oldphoto-card":
            cards[card["name"]] = card
    return cards


def pin_source(card: dict[str, Any], repo: str, revision: str | None, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Return ``card`` with its ``oldphoto`` source pointing at ``repo``@``revision`` with ``files`` hashes."""
    sources = [dict(s) for s in card.get("sources", [])]
    ours = next((s for s in sources if s.get("kind") == "oldphoto"), None)
    if ours is None:
        ours = {"kind": "oldphoto"}
        sources.insert(0, ours)
    # Only a real upload publishes the repository: from then on it is tried before the published layout.
    ours.update(repo=repo, revision=revision, published=revision is not None, files=files)
    return {**card, "sources": sources}


def _upload(out: Path, names: list[str], repo: str, token: str | None, endpoint: str | None) -> str:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo, repo_type="model", exist_ok=True)
    readme = out / "README.md"
    readme.write_text(
        "---\nlicense: mit\nlibrary_name: oldphoto\n---\n\n"
        "# Bringing Old Photos Back to Life: converted weights\n\n"
        "The published checkpoints of Wan et al. (CVPR 2020; Microsoft, MIT licence), converted to "
        "safetensors by `oldphoto`'s importer. Each `NAME.json` records the configuration and the "
        "sha256 of the published file it was converted from.\n",
        encoding="utf-8",
    )
    patterns = ["README.md", *(f"{n}.{ext}" for n in names for ext in ("safetensors", "json"))]
    info = api.upload_folder(
        repo_id=repo, folder_path=out, allow_patterns=patterns, commit_message=f"Converted weights: {', '.join(names)}"
    )
    return str(info.oid)


def publish(
    src: Path | str,
    *,
    repo: str = DEFAULT_REPO,
    cards_dir: Path | str = CARDS_DIR,
    out: Path | str | None = None,
    dry_run: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
) -> PublishReport:
    """Convert the published checkpoints under ``src``, upload (unless ``dry_run``), pin the cards."""
    from oldphoto.fsutil import atomic_write_bytes, sha256_file
    from oldphoto.weights.importer import import_official

    cards_dir = Path(cards_dir)
    cards = read_cards(cards_dir)
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="oldphoto-publish-"))
    report = PublishReport(out=out)
    imported = import_official(src, out, cards=cards)
    report.skipped = dict(imported.missing)
    report.warnings = list(imported.warnings)
    names = list(imported.imported)
    for name in names:
        meta = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
        for entry in meta.get("sources", []):
            report.published[entry["file"]] = entry["sha256"]
        report.files[name] = {
            f"{name}.{ext}": {"sha256": sha256_file(out / f"{name}.{ext}"), "size": (out / f"{name}.{ext}").stat().st_size}
            for ext in ("safetensors", "json")
        }
    if names and not dry_run:
        report.revision = _upload(out, names, repo, token, endpoint)
    for name in names:
        card = pin_source(cards[name], repo, report.revision, report.files[name])
        path = cards_dir / f"{name}.json"
        atomic_write_bytes(path, (json.dumps(card, indent=2, ensure_ascii=False) + "\n").encode())
        report.cards[name] = path
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line of the recipe; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="the published 'checkpoints/' folder (or the folder holding it)")
    parser.add_argument("--repo", default=DEFAULT_REPO, help=f"Hub repository to upload to (default {DEFAULT_REPO})")
    parser.add_argument("--cards", type=Path, default=CARDS_DIR, help="folder of model cards to update (default: oldphoto/weights/cards)")
    parser.add_argument("--out", type=Path, help="where to write the converted files (default: a temporary folder)")
    parser.add_argument("--dry-run", action="store_true", help="convert, hash and write the cards, but upload nothing")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the saved login)")
    args = parser.parse_args(argv)
    from oldphoto.errors import OldPhotoError

    try:
        report = publish(args.src, repo=args.repo, cards_dir=args.cards, out=args.out, dry_run=args.dry_run, token=args.token)
    except OldPhotoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for name, why in report.skipped.items():
        print(f"skipped {name}: {why}")
    for rel, sha in sorted(report.published.items()):
        print(f"published file {rel}  sha256 {sha}")
    for files in report.files.values():
        for fname, info in files.items():
            print(f"{fname}  sha256 {info['sha256']}  {info['size']} bytes")
    where = f"{args.repo}@{report.revision}" if report.revision else f"{args.repo} (dry run: not uploaded, no revision)"
    print(f"cards written for {', '.join(report.cards) or 'no model'} -> {where}; converted files in {report.out}")
    return 0 if report.cards else 1


if __name__ == "__main__":
    sys.exit(main())
