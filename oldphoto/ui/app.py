"""The page of ``oldphoto ui``: Gradio components wired to :mod:`oldphoto.ui.session`.

Upload one or several photos: each one taken shows as a thumbnail with its name, and clicking
one works on it. "Find scratches" paints the detector's mask on the photo's "damage" layer in
the editor, where the brush adds damage and the eraser removes it; "Restore" restores the
photo with the painted mask (read by the ``--mask`` rule), shows before and after on a
slider, and offers the restored photo and the mask for download. The editor, the slider and
the face options appear only when they can be used: the editor once there is a photo, the
slider once there is a result, the face options when faces can be enhanced (else one line
says why not).
One photo is worked on at a time: detection and restoration share one queue slot, so
further clicks wait their turn. Importing this module imports Gradio; the CLI does so only
for ``oldphoto ui``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from oldphoto.errors import OldPhotoError
from oldphoto.imageio import READABLE_EXTENSIONS
from oldphoto.ui.session import (
    CHOICES,
    MASK_COLOUR,
    MASK_OPACITY,
    MIN_SIDE,
    Session,
    mask_from_layers,
    mask_layer,
    readable,
)

#: Detection and restoration share this queue slot, so one runs at a time and clicks queue.
_SLOT = "networks"
_HEX = "#{:02x}{:02x}{:02x}".format(*MASK_COLOUR)
_INTRO = (
    "Drop one or several scanned photos. **Find scratches** marks the damage in yellow; paint "
    "what it missed with the brush, and wipe what it got wrong with the eraser (or paint the "
    "damage yourself). **Restore**, compare before and after, and download the restored photo "
    "(and the damage mask, to reuse later). Everything stays on this computer."
)
_WAITING = "Your photo will show here once you add it: drop it in the box on the left."
#: Styles given to ``launch``: the list of photos taken is as tall as its thumbnails (Gradio
#: reserves 450 px for a gallery of unset height, which reads as a missing picture).
CSS = "#photos .grid-wrap { min-height: 0 !important; padding-top: var(--size-6); }"


def _status(text: str, kind: str = "info") -> str:
    prefix = {"error": "**Problem:** ", "info": "", "warning": "**Note:** "}[kind]
    return f"{prefix}{text}"


def build(session: Session, *, faces_default: bool = False) -> gr.Blocks:
    """The page for ``session`` (a :class:`~oldphoto.ui.session.Session`)."""
    hidden = gr.update(value=None, visible=False)

    def shown(photos: dict, thumbs: dict, current: str | None) -> Any:
        """The thumbnails of the photos taken, their names beneath, the one worked on selected."""
        return gr.update(
            value=[(thumbs[label], label) for label in photos], visible=bool(photos),
            selected_index=list(photos).index(current) if current in photos else None,
        )

    def uploaded(
        files: list[str] | None, photos: dict, thumbs: dict, masks: dict, current: str | None, editor: dict | None
    ) -> tuple[Any, ...]:
        """Check each new upload; add the usable ones to the photos taken (shown as thumbnails); open the first.

        The upload box is emptied afterwards, ready for more; what it took stays in view as
        the thumbnails beneath it.
        """
        photos, thumbs, masks = dict(photos), dict(thumbs), _keep_mask(current, photos, dict(masks), editor)
        added: list[str] = []
        problems = []
        for file in files or []:
            path = Path(file)
            try:
                photo = session.open(path)
            except Exception as exc:  # noqa: BLE001 - a bad file is a message; the page keeps working
                problems.append(readable(exc, path))
                continue
            label, n = path.name, 1
            while label in photos:
                n += 1
                label = f"{path.stem} ({n}){path.suffix}"
            photos[label] = str(path)
            thumbs[label] = str(session.save_thumbnail(photo))
            added.append(label)
        lines = [_status(p, "error") for p in problems]
        if not added:
            unchanged = (gr.update(),) * 5
            return (None, photos, thumbs, masks, shown(photos, thumbs, current), current, *unchanged,
                    "\n\n".join(lines) or "No photo uploaded.")
        current = added[0]
        editor_value, warnings = _editor_value(photos[current], masks.get(current))
        lines.append(f"{len(added)} photo{'s' if len(added) > 1 else ''} added: {', '.join(added)}. Working on {current}.")
        lines += [_status(w, "warning") for w in warnings]
        return (
            None, photos, thumbs, masks, shown(photos, thumbs, current), current,
            gr.update(value=editor_value, visible=True), gr.update(visible=False), hidden, hidden, hidden,
            "\n\n".join(lines),
        )

    def _keep_mask(current: str | None, photos: dict, masks: dict, editor: dict | None) -> dict:
        """``masks`` with the mask painted on the photo being left, so coming back to it finds it."""
        if current in photos and editor and editor.get("layers"):
            try:
                masks[current] = mask_from_layers(editor["layers"], session.open(photos[current]).image.size)
            except OldPhotoError:
                pass
        return masks

    def _editor_value(path: str | None, mask: Any = None) -> tuple[Any, list[str]]:
        if path is None:
            return None, []
        photo = session.open(path)
        rgb = photo.image.convert("RGB")
        value = {"background": rgb, "layers": [mask_layer(mask, rgb.size)], "composite": None}
        return value, photo.warnings

    def picked(
        evt: gr.SelectData, current: str | None, photos: dict, thumbs: dict, masks: dict, editor: dict | None
    ) -> tuple[Any, ...]:
        """A thumbnail was clicked: keep the mask painted on the photo being left; show the chosen one with its own."""
        labels = list(photos)
        choice = labels[evt.index] if isinstance(evt.index, int) and 0 <= evt.index < len(labels) else None
        if choice is None or choice == current:
            return (masks, current, gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), gr.update())
        masks = _keep_mask(current, photos, dict(masks), editor)
        try:
            value, _ = _editor_value(photos[choice], masks.get(choice))
        except OldPhotoError as exc:
            return (masks, current, shown(photos, thumbs, current), gr.update(), gr.update(), gr.update(), gr.update(),
                    _status(str(exc), "error"))
        # The result on show was the other photo's: it goes, with its downloads.
        return masks, choice, shown(photos, thumbs, choice), value, hidden, hidden, hidden, f"Working on {choice}."

    def detect(current: str | None, photos: dict, progress: gr.Progress = gr.Progress()) -> tuple[Any, str]:
        if current is None:
            return gr.update(), _status("upload a photo first.", "error")
        progress(0.1, desc="finding scratches")
        try:
            mask = session.detect(photos[current])
            value, _ = _editor_value(photos[current], mask)
        except Exception as exc:  # noqa: BLE001 - shown in the page, which keeps working
            return gr.update(), _status(readable(exc, photos[current], current), "error")
        share = (sum(mask.histogram()[128:]) / (mask.width * mask.height)) if mask.width * mask.height else 0.0
        return value, f"Found scratches on {share:.2%} of {current}: correct the yellow marks, then restore."

    def restore(
        current: str | None, photos: dict, editor: dict | None, choice: str, faces: bool, strength: float,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[Any, ...]:
        nothing = (hidden, hidden, hidden)
        if current is None:
            return (*nothing, _status("upload a photo first.", "error"))
        path = photos[current]
        progress(0.0, desc="restoring")
        try:
            size = session.open(path).image.size
            mask = mask_from_layers((editor or {}).get("layers"), size)

            def advanced(done: int, total: int) -> None:
                progress(done / max(total, 1), desc=f"restoring (tile {done} of {total})")

            result = session.restore(path, mask, choice=choice, faces=faces, face_strength=strength, progress=advanced)
        except Exception as exc:  # noqa: BLE001 - shown in the page, which keeps working
            return (*nothing, _status(readable(exc, path, current), "error"))
        text = "\n\n".join([result.message.replace(Path(path).name, current), *(_status(w, "warning") for w in result.warnings)])
        return (
            gr.update(value=(result.before.convert("RGB"), result.after.convert("RGB")), visible=True),
            gr.update(value=str(result.output), visible=True, label=f"Download {result.output.name}"),
            gr.update(value=str(result.mask) if result.mask else None, visible=result.mask is not None,
                      label=f"Download mask {result.mask.name}" if result.mask else "Download mask"),
            text,
        )

    faces_on = session.faces_off is None
    with gr.Blocks(title="oldphoto", analytics_enabled=False) as page:
        photos = gr.State({})
        thumbs = gr.State({})
        masks = gr.State({})
        current = gr.State(None)
        gr.Markdown("## oldphoto: bring old photos back to life\n\n" + _INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                upload = gr.File(
                    label="Add photos", file_count="multiple", type="filepath", elem_id="upload",
                    file_types=sorted(READABLE_EXTENSIONS), height=160,
                )
                gallery = gr.Gallery(
                    label="Your photos (click one to work on it)", visible=False, elem_id="photos", columns=2,
                    allow_preview=False, interactive=False, object_fit="contain", buttons=[], fit_columns=False,
                )
                choice = gr.Radio(
                    list(CHOICES), value="auto", label="Restore for",
                    info="auto: scratches when a mask is painted, quality otherwise", elem_id="choice",
                )
                # Only what works is shown: without faces, one line says why instead of the options.
                faces = gr.Checkbox(value=faces_on and faces_default, label="Enhance faces", elem_id="faces", visible=faces_on)
                strength = gr.Slider(
                    0.0, 1.0, value=1.0, step=0.05, label="Face strength", elem_id="strength",
                    visible=faces_on and faces_default,
                )
                gr.Markdown(session.faces_off or "", elem_id="faces-off", visible=not faces_on)
                with gr.Row():
                    find = gr.Button("Find scratches", elem_id="detect")
                    go = gr.Button("Restore", variant="primary", elem_id="restore")
                status = gr.Markdown("No photo uploaded.", elem_id="status")
            with gr.Column(scale=3):
                waiting = gr.Markdown(_WAITING, elem_id="waiting")
                # Hidden until there is a photo: an empty editor shows a meaningless zoom and canvas.
                editor = gr.ImageEditor(
                    label="Damage mask: brush = damaged, eraser = not damaged",
                    type="pil", image_mode="RGBA", format="png", sources=(), transforms=(),
                    brush=gr.Brush(colors=[(_HEX, MASK_OPACITY)], default_color=(_HEX, MASK_OPACITY), color_mode="fixed", default_size=12),
                    eraser=gr.Eraser(default_size=16),
                    layers=gr.LayerOptions(allow_additional_layers=False, layers=["damage"], disabled=True),
                    # The editor's layers take the larger of this and the photo's size, and a
                    # mask layer sent from here is centred on them: the smallest canvas keeps
                    # the layers exactly the photo's size, so the mask lands where it belongs.
                    canvas_size=(MIN_SIDE, MIN_SIDE),
                    elem_id="editor", height=560, visible=False,
                )
                compare = gr.ImageSlider(
                    label="Before / after", type="pil", format="png", buttons=["fullscreen"], elem_id="compare",
                    max_height=800, visible=False,
                )
                with gr.Row():
                    photo_out = gr.DownloadButton("Download photo", visible=False, elem_id="download-photo", variant="primary")
                    mask_out = gr.DownloadButton("Download mask", visible=False, elem_id="download-mask")

        # Progress shows on the pictures being made, never over the status line.
        upload.upload(
            uploaded, [upload, photos, thumbs, masks, current, editor],
            [upload, photos, thumbs, masks, gallery, current, editor, waiting, compare, photo_out, mask_out, status],
            show_progress_on=[editor],
        )
        gallery.select(
            picked, [current, photos, thumbs, masks, editor],
            [masks, current, gallery, editor, compare, photo_out, mask_out, status], show_progress_on=[editor],
        )
        faces.change(lambda on: gr.update(visible=bool(on)), faces, strength, show_progress="hidden")
        find.click(detect, [current, photos], [editor, status], concurrency_id=_SLOT, concurrency_limit=1, show_progress_on=[editor])
        # The slider shows at once, empty, to carry the progress where the result will appear.
        go.click(lambda: gr.update(visible=True), None, compare, queue=False, show_progress="hidden").then(
            restore, [current, photos, editor, choice, faces, strength], [compare, photo_out, mask_out, status],
            concurrency_id=_SLOT, concurrency_limit=1, show_progress_on=[compare],
        )
    return page
