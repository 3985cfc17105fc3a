"""The page of ``oldphoto ui``: Gradio components wired to :mod:`oldphoto.ui.session`.

Upload one or several photos; pick one; "Find scratches" paints the detector's mask on the
photo's "damage" layer in the editor, where the brush adds damage and the eraser removes it;
"Restore" restores the photo with the painted mask (read by the ``--mask`` rule), shows
before and after on a slider, and offers the restored photo and the mask for download.
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
from oldphoto.ui.session import CHOICES, MASK_COLOUR, MASK_OPACITY, MIN_SIDE, Session, mask_from_layers, mask_layer, readable

#: Detection and restoration share this queue slot, so one runs at a time and clicks queue.
_SLOT = "networks"
_HEX = "#{:02x}{:02x}{:02x}".format(*MASK_COLOUR)
_INTRO = (
    "Drop one or several scanned photos. **Find scratches** marks the damage in yellow; paint "
    "what it missed with the brush, and wipe what it got wrong with the eraser (or paint the "
    "damage yourself). **Restore**, compare before and after, and download the photo and the "
    "mask (reusable with `oldphoto restore --mask`). Everything stays on this computer."
)


def _status(text: str, kind: str = "info") -> str:
    prefix = {"error": "**Problem:** ", "info": "", "warning": "**Note:** "}[kind]
    return f"{prefix}{text}"


def build(session: Session, *, faces_default: bool = False) -> gr.Blocks:
    """The page for ``session`` (a :class:`~oldphoto.ui.session.Session`)."""

    def uploaded(files: list[str] | None, photos: dict, masks: dict, current: str | None, editor: dict | None) -> tuple[Any, ...]:
        """Check each new upload; add the usable ones to the photos; open the first of them.

        The upload box is emptied afterwards: it is where photos are dropped, and the list of
        photos to work on is the picker's.
        """
        photos, masks = dict(photos), _keep_mask(current, photos, dict(masks), editor)
        added: list[str] = []
        problems = []
        for file in files or []:
            path = Path(file)
            try:
                session.open(path)
            except Exception as exc:  # noqa: BLE001 - a bad file is a message; the page keeps working
                problems.append(readable(exc, path))
                continue
            label, n = path.name, 1
            while label in photos:
                n += 1
                label = f"{path.stem} ({n}){path.suffix}"
            photos[label] = str(path)
            added.append(label)
        lines = [_status(p, "error") for p in problems]
        editor_value: Any = gr.update()
        if added:
            current = added[0]
            editor_value, warnings = _editor_value(photos[current], masks.get(current))
            lines.append(f"{len(added)} photo{'s' if len(added) > 1 else ''} added: {', '.join(added)}. Working on {current}.")
            lines += [_status(w, "warning") for w in warnings]
        return (
            None,
            photos,
            masks,
            gr.update(choices=list(photos), value=current, visible=len(photos) > 1),
            current,
            editor_value,
            "\n\n".join(lines) or "No photo uploaded.",
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

    def switched(choice: str | None, current: str | None, photos: dict, masks: dict, editor: dict | None) -> tuple[Any, ...]:
        """Keep the mask painted on the photo being left; show the chosen photo with its own mask."""
        if choice is None or choice == current or choice not in photos:
            return masks, current, gr.update(), gr.update()
        masks = _keep_mask(current, photos, dict(masks), editor)
        try:
            value, _ = _editor_value(photos[choice], masks.get(choice))
        except OldPhotoError as exc:
            return masks, current, gr.update(), _status(str(exc), "error")
        return masks, choice, value, f"Working on {choice}."

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
        nothing = (gr.update(), gr.update(value=None, visible=False), gr.update(value=None, visible=False))
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
            (result.before.convert("RGB"), result.after.convert("RGB")),
            gr.update(value=str(result.output), visible=True, label=f"Download {result.output.name}"),
            gr.update(value=str(result.mask) if result.mask else None, visible=result.mask is not None,
                      label=f"Download mask {result.mask.name}" if result.mask else "Download mask"),
            text,
        )

    with gr.Blocks(title="oldphoto", analytics_enabled=False) as page:
        photos = gr.State({})
        masks = gr.State({})
        current = gr.State(None)
        gr.Markdown("## oldphoto: bring old photos back to life\n\n" + _INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                upload = gr.File(
                    label="Photos", file_count="multiple", type="filepath", elem_id="upload",
                    file_types=sorted(READABLE_EXTENSIONS),
                )
                picker = gr.Radio(label="Photo to work on", choices=[], visible=False, elem_id="picker")
                choice = gr.Radio(
                    list(CHOICES), value="auto", label="Restore for",
                    info="auto: scratches when a mask is painted, quality otherwise", elem_id="choice",
                )
                faces = gr.Checkbox(value=faces_default, label="Enhance faces", elem_id="faces")
                strength = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Face strength", elem_id="strength")
                with gr.Row():
                    find = gr.Button("Find scratches", elem_id="detect")
                    go = gr.Button("Restore", variant="primary", elem_id="restore")
                status = gr.Markdown("No photo uploaded.", elem_id="status")
            with gr.Column(scale=3):
                editor = gr.ImageEditor(
                    label="Damage mask: brush = damaged, eraser = not damaged",
                    type="pil", image_mode="RGBA", format="png", sources=(), transforms=(),
                    brush=gr.Brush(colors=[(_HEX, MASK_OPACITY)], default_color=(_HEX, MASK_OPACITY), color_mode="fixed", default_size=12),
                    eraser=gr.Eraser(default_size=16),
                    layers=gr.LayerOptions(allow_additional_layers=False, layers=["damage"]),
                    # The editor's layers take the larger of this and the photo's size, and a
                    # mask layer sent from here is centred on them: the smallest canvas keeps
                    # the layers exactly the photo's size, so the mask lands where it belongs.
                    canvas_size=(MIN_SIDE, MIN_SIDE),
                    elem_id="editor", height=560,
                )
                compare = gr.ImageSlider(
                    label="Before / after", type="pil", format="png", buttons=["fullscreen"], elem_id="compare", max_height=800,
                )
                with gr.Row():
                    photo_out = gr.DownloadButton("Download photo", visible=False, elem_id="download-photo", variant="primary")
                    mask_out = gr.DownloadButton("Download mask", visible=False, elem_id="download-mask")

        # Progress shows on the pictures being made, never over the status line.
        upload.upload(
            uploaded, [upload, photos, masks, current, editor], [upload, photos, masks, picker, current, editor, status],
            show_progress_on=[editor],
        )
        picker.change(switched, [picker, current, photos, masks, editor], [masks, current, editor, status], show_progress_on=[editor])
        find.click(detect, [current, photos], [editor, status], concurrency_id=_SLOT, concurrency_limit=1, show_progress_on=[editor])
        go.click(
            restore, [current, photos, editor, choice, faces, strength], [compare, photo_out, mask_out, status],
            concurrency_id=_SLOT, concurrency_limit=1, show_progress_on=[compare],
        )
    return page
