"""``oldphoto inspect FILE``: print the provenance a restored file carries, and check its weights.

The provenance is the XMP :mod:`oldphoto.provenance` writes into every output. With
``--check-weights`` each network's recorded sha256 is compared with the weights this machine
would load for the same model (the cache, the bundled lite model, or the ``--weights`` folder
the file names), so an auditor can tell whether a restoration can be repeated here.
"""

from __future__ import annotations

from pathlib import Path

import typer

from oldphoto.cli.common import fail


def inspect(
    file: Path = typer.Argument(..., help="A file written by 'oldphoto restore' (PNG, TIFF, JPEG or WebP).", show_default=False),
    check_weights: bool = typer.Option(
        False, "--check-weights", help="Also check that the weights it names are the ones in the cache (exit 1 if not)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the provenance as one JSON object."),
) -> None:
    """Show how a restored photo was made: tool, model, weights' sha256, mode, mask, precision, device, original."""
    import json

    from oldphoto.provenance import parse, read_xmp, summary

    try:
        packet = read_xmp(file)
    except (OSError, ValueError, SyntaxError) as exc:
        fail(f"{file}: cannot read it as an image ({exc})", code=2)
    record = parse(packet) if packet else None
    if record is None:
        fail(f"{file}: carries no oldphoto provenance (restored with --no-provenance, or not by oldphoto)")
    checks = _check(record) if check_weights else {}
    if json_out:
        typer.echo(json.dumps({**record, **({"weights_check": checks} if check_weights else {})}, ensure_ascii=False))
    else:
        typer.echo(f"{file}: {summary(record)}")
        for key in ("tool", "model", "mode", "mask", "mask_file", "mask_sha256", "precision", "device", "bits",
                    "original", "original_sha256"):
            if record.get(key):
                typer.echo(f"  {key:16} {record[key]}")
        for network, sha in record["weights"].items():
            typer.echo(f"  weights {network:8} sha256:{sha}" + (f"  ({checks[network]})" if network in checks else ""))
        if len(record["history"]) > 1:
            typer.echo("  history:")
            for event in record["history"]:
                typer.echo(f"    {event}")
    if check_weights and any(not text.startswith("matches") for text in checks.values()):
        raise typer.Exit(1)


def _check(record: dict) -> dict[str, str]:
    """Per network: ``matches ...``, or why the weights here are not the recorded ones."""
    from oldphoto.weights.checkpoint import has_checkpoint, read_meta, verify_checkpoint

    out: dict[str, str] = {}
    model = record.get("model", "")
    for network, sha in record["weights"].items():
        folder = _folder(model, network)
        if folder is None or not has_checkpoint(folder, network):
            out[network] = f"not here: no cached '{network}' weights for the {model} model"
            continue
        cached = read_meta(folder, network).get("weights_sha256")
        if cached != sha:
            out[network] = f"differs: {folder} holds sha256:{cached}"
        elif not verify_checkpoint(folder, network):
            out[network] = f"differs: {folder}/{network}.safetensors no longer matches its recorded sha256"
        else:
            out[network] = f"matches {folder}"
    return out


def _folder(model: str, network: str) -> Path | None:
    """Where this machine keeps ``network`` of ``model``: the bundled lite folder, the cache, or the named folder."""
    if model == "lite":
        from oldphoto.weights.choice import lite_folder

        return lite_folder()
    if model == "published":
        from oldphoto.weights.resolve import find_here

        return find_here(network)
    return Path(model) if model and Path(model).is_dir() else None
