"""The review report of a folder run (``--report report.html``) and its run manifest (``report.json``).

One static page lists every photo: before/after thumbnails, the mask overlay where one was
used, model, mode, seconds, the flags worth a look (large mask, faces changed, tiled, fallback
model), failures first with their reasons, filters for the flags, and a link to each full-size
output. Everything it shows is beside it: the page itself (data, style and script inline, no
network), and ``report_files/`` with the thumbnails, which :func:`thumbnails` writes where the
photo's files are written (by the local writer thread or a Ray worker alike), and the
browser loads lazily, so the page stays quick at tens of thousands of photos.

:class:`Report` keeps the page and the manifest current as records arrive (rewritten at most
every few seconds, and when the run ends or is interrupted). The manifest holds every record,
so re-running the same command (a resume) picks the earlier photos up and completes the page.
"""

from __future__ import annotations

import html
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict
from hashlib import sha1
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from oldphoto.fsutil import atomic_write_bytes

#: Longest side of a thumbnail, in pixels.
THUMB = 160
#: A mask covering more than this share of the photo is flagged for a look.
LARGE_MASK = 0.05
#: Seconds between two rewrites of the page while a run goes on.
REWRITE_EVERY = 5.0
FLAGS = {
    "failed": "failed",
    "large-mask": "large mask",
    "faces": "faces changed",
    "tiled": "tiled",
    "fallback": "fallback model",
}


def files_folder(report: Path) -> Path:
    """Where a report's thumbnails go: ``NAME_files/`` beside ``NAME.html``."""
    return report.with_name(report.stem + "_files")


def thumbnails(folder: Path, output: Path, before: Image.Image, after: Image.Image, mask: Image.Image | None) -> dict[str, Any]:
    """Write one photo's before, after and mask-overlay thumbnails into ``folder``; return what the report needs.

    Named after the output path, so a re-run writes the same names.
    """
    folder.mkdir(parents=True, exist_ok=True)
    key = sha1(str(output).encode("utf-8")).hexdigest()[:16]
    small = before.convert("RGB")
    small.thumbnail((THUMB, THUMB), Image.Resampling.BILINEAR)
    names = {"before": f"{key}-before.jpg", "after": f"{key}-after.jpg"}
    _save_thumb(small, folder / names["before"])
    restored = after.convert("RGB").resize(small.size, Image.Resampling.BILINEAR)
    _save_thumb(restored, folder / names["after"])
    review: dict[str, Any] = {"thumbs": names, "thumb_size": list(small.size)}
    if mask is not None:
        damaged = np.asarray(mask.convert("L")) >= 128
        review["mask_share"] = round(float(damaged.mean()), 5)
        overlay = small.copy()
        red = Image.new("RGB", small.size, (255, 40, 40))
        shown = Image.fromarray((damaged * 160).astype(np.uint8)).resize(small.size, Image.Resampling.BILINEAR)
        overlay.paste(red, mask=shown)
        names["mask"] = f"{key}-mask.jpg"
        _save_thumb(overlay, folder / names["mask"])
    return review


def _save_thumb(image: Image.Image, path: Path) -> None:
    from io import BytesIO

    data = BytesIO()
    image.save(data, format="JPEG", quality=80)
    atomic_write_bytes(path, data.getvalue())


def flags(entry: Mapping[str, Any], requested_model: str) -> list[str]:
    """The keys of :data:`FLAGS` that apply to one report entry."""
    found = []
    if entry.get("status") == "failed":
        found.append("failed")
    review = entry.get("review") or {}
    if review.get("mask_share", 0.0) > LARGE_MASK:
        found.append("large-mask")
    if any(face.get("enhanced") for face in entry.get("faces") or []):
        found.append("faces")
    if review.get("tiled"):
        found.append("tiled")
    if entry.get("model") == "lite" and requested_model == "auto":
        found.append("fallback")
    return found


def versions() -> dict[str, str]:
    """The versions a run depends on, for the manifest."""
    import PIL

    from oldphoto import __version__

    found = {"oldphoto": __version__, "python": sys.version.split()[0], "pillow": PIL.__version__, "numpy": np.__version__}
    torch = sys.modules.get("torch")
    if torch is not None:
        found["torch"] = torch.__version__
    return found


class Report:
    """The page and manifest of one folder run, kept current as records arrive."""

    def __init__(self, path: Path | str, *, command: list[str], settings: Mapping[str, Any], requested_model: str = "auto") -> None:
        self.path = Path(path)
        self.manifest = self.path.with_suffix(".json")
        self.files = files_folder(self.path)
        self.command = command
        self.settings = dict(settings)
        self.requested_model = requested_model
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.entries: dict[str, dict[str, Any]] = {}
        self.earlier = self._earlier()
        self.finished: str | None = None
        self._written = 0.0

    def _earlier(self) -> dict[str, dict[str, Any]]:
        """Records of an earlier run of this report (a resume), by output path."""
        try:
            old = json.loads(self.manifest.read_text(encoding="utf-8"))
            return {e["output"]: e for e in old.get("photos", []) if e.get("status") == "restored"}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def add(self, record: Any) -> None:
        """Take one record (a :class:`~oldphoto.batch.Record`); rewrite the files when a few seconds have passed."""
        entry = {k: v for k, v in asdict(record).items() if v is not None}
        earlier = self.earlier.get(entry["output"])
        if entry["status"] == "skipped" and earlier is not None:
            entry = {**earlier, "earlier_run": True}
        self.entries[entry["output"]] = entry
        if time.monotonic() - self._written >= REWRITE_EVERY:
            self.write()

    def close(self, interrupted: bool = False) -> None:
        """Write the final page and manifest (``interrupted``: the page says the run did not finish)."""
        self.finished = None if interrupted else time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.write(interrupted=interrupted)

    def write(self, interrupted: bool = False) -> None:
        """Rewrite the page and the manifest from the records so far (each atomically)."""
        photos = list(self.entries.values())
        weights: dict[str, str] = {}
        for entry in photos:
            weights.update((entry.get("provenance") or {}).get("weights", {}))
        manifest = {
            "command": self.command,
            "started": self.started,
            "finished": self.finished,
            "versions": versions(),
            "settings": self.settings,
            "weights": weights,
            "photos": photos,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.manifest, json.dumps(manifest, indent=1, ensure_ascii=False, default=str).encode("utf-8"))
        atomic_write_bytes(self.path, self._page(photos, interrupted).encode("utf-8"))
        self._written = time.monotonic()

    def _page(self, photos: list[dict[str, Any]], interrupted: bool) -> str:
        base = self.path.parent
        rows = []
        for order, entry in enumerate(photos):
            found = flags(entry, self.requested_model)
            review = entry.get("review") or {}
            rows.append({
                "i": order,
                "name": entry["input"],
                "href": _href(base, entry["output"]) if entry["status"] != "failed" else None,
                "status": entry["status"],
                "error": entry.get("error"),
                "model": entry.get("model"),
                "mode": entry.get("mode"),
                "seconds": entry.get("seconds"),
                "flags": found,
                "thumbs": {k: _href(base, str(self.files / v)) for k, v in review.get("thumbs", {}).items()},
                "size": review.get("thumb_size"),
                "mask": review.get("mask_share"),
                "earlier": entry.get("earlier_run", False),
            })
        rows.sort(key=lambda r: (r["status"] != "failed", not r["flags"], r["i"]))
        state = "interrupted: re-run the same command to finish it" if interrupted else (
            "finished" if self.finished else "running")
        data = json.dumps({"rows": rows, "flags": FLAGS, "state": state, "command": " ".join(self.command)},
                          ensure_ascii=False).replace("</", "<\\/")
        page = _PAGE.replace("__TITLE__", html.escape(f"oldphoto report: {base.name or base}"))
        return page.replace("__DATA__", data)


def _href(base: Path, target: str) -> str:
    """A relative link from the report's folder to ``target``, URL-quoted."""
    from urllib.parse import quote

    return quote(os.path.relpath(os.path.abspath(target), os.path.abspath(base)).replace(os.sep, "/"))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>__TITLE__</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f2ee;color:#222}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ccc;padding:8px 16px;z-index:1}
h1{font-size:18px;margin:0 0 4px}
#summary{margin:2px 0 6px;color:#444}
#filters label{margin-right:14px;white-space:nowrap}
#list{position:relative;margin:8px 16px}
.row{position:absolute;left:0;right:0;height:172px;box-sizing:border-box;display:flex;gap:10px;align-items:flex-start;
background:#fff;padding:6px;border-radius:4px;overflow:hidden}
.row.failed{border-left:4px solid #c22}
.thumb{width:160px;height:160px;display:flex;align-items:center;justify-content:center;background:#eee;flex:none}
.thumb img{max-width:160px;max-height:160px}
.info{min-width:0}
.name{font-weight:600;word-break:break-all}
.flag{display:inline-block;background:#fde68a;border-radius:3px;padding:0 5px;margin:2px 4px 0 0;font-size:12px}
.flag.failed{background:#fca5a5}
.error{color:#a00;display:-webkit-box;-webkit-line-clamp:5;-webkit-box-orient:vertical;overflow:hidden}
</style></head><body>
<header><h1>__TITLE__</h1><div id="summary"></div>
<div id="filters"><label><input type="checkbox" value="" id="all" checked> all</label></div>
<div id="showing"></div></header>
<main id="list"></main>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const esc = s => String(s).replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"})[c]);
const counts = {restored: 0, skipped: 0, failed: 0}, flagged = {};
for (const r of data.rows) { counts[r.status] = (counts[r.status] || 0) + 1; for (const f of r.flags) flagged[f] = (flagged[f] || 0) + 1; }
document.getElementById("summary").textContent = `${data.rows.length} photos: ${counts.restored} restored, ` +
  `${counts.skipped} skipped, ${counts.failed} failed; run ${data.state}. ${data.command}`;
const filters = document.getElementById("filters");
for (const [key, label] of Object.entries(data.flags)) {
  filters.insertAdjacentHTML("beforeend", `<label><input type="checkbox" value="${key}"> ${esc(label)} (${flagged[key] || 0})</label>`);
}
function img(src, size, alt) {
  if (!src) return `<div class="thumb"></div>`;
  const [w, h] = size || [160, 160];
  return `<div class="thumb"><img loading="lazy" decoding="async" src="${src}" width="${w}" height="${h}" alt="${alt}"></div>`;
}
function rowHtml(r, top) {
  const link = r.href ? `<a class="name" href="${r.href}">${esc(r.name)}</a>` : `<span class="name">${esc(r.name)}</span>`;
  const meta = r.status === "failed" ? `<div class="error">${esc(r.error || "failed")}</div>` :
    `<div>${esc(r.status)}${r.earlier ? " (earlier run)" : ""}: ${esc(r.model || "")} model, ${esc(r.mode || "")} mode, ${r.seconds ?? ""} s` +
    `${r.mask != null ? `, mask ${(r.mask * 100).toFixed(1)} %` : ""}</div>`;
  const flags = r.flags.map(f => `<span class="flag ${f}">${esc(data.flags[f])}</span>`).join("");
  return `<div class="row ${r.status}" style="top:${top}px" data-flags="${r.flags.join(" ")}">${img(r.thumbs.before, r.size, "before")}` +
    `${img(r.thumbs.after, r.size, "after")}${r.thumbs.mask ? img(r.thumbs.mask, r.size, "mask") : ""}` +
    `<div class="info">${link}${meta}<div>${flags}</div></div></div>`;
}
// Only the rows on screen (and a few around them) are in the page, so it opens and scrolls
// as fast with 20,000 photos as with 20; the list keeps every photo's height for the scroll bar.
const ROW = 178, MARGIN = 8;
const list = document.getElementById("list");
let shown = data.rows, drawn = "";
function render() {
  const top = window.scrollY - list.offsetTop;
  const first = Math.max(0, Math.floor(top / ROW) - MARGIN);
  const last = Math.min(shown.length, Math.ceil((top + innerHeight) / ROW) + MARGIN);
  list.style.height = `${shown.length * ROW}px`;
  const key = `${first}:${last}:${shown.length}`;
  if (key === drawn) return;
  drawn = key;
  let html = "";
  for (let i = first; i < last; i++) html += rowHtml(shown[i], i * ROW);
  list.innerHTML = html;
}
let queued = false;
const later = () => { if (!queued) { queued = true; requestAnimationFrame(() => { queued = false; render(); }); } };
addEventListener("scroll", later);
addEventListener("resize", later);
function apply() {
  const on = [...filters.querySelectorAll("input[value]:checked")].map(i => i.value).filter(Boolean);
  document.getElementById("all").checked = on.length === 0;
  shown = on.length ? data.rows.filter(r => on.some(f => r.flags.includes(f))) : data.rows;
  document.getElementById("showing").textContent = `showing ${shown.length} of ${data.rows.length}`;
  drawn = "";
  render();
}
filters.addEventListener("change", e => {
  if (e.target.id === "all") for (const i of filters.querySelectorAll("input[value]")) i.checked = false;
  apply();
});
apply();
performance.mark("rows-shown");
document.body.dataset.ready = "1";
</script></body></html>
"""
