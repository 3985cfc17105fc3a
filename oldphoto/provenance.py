"""Provenance: what a restored file says about how it was made, as standard XMP.

Every output carries one XMP packet (PNG iTXt ``XML:com.adobe.xmp``, TIFF tag 700, JPEG APP1,
WebP ``XMP`` chunk; :func:`oldphoto.imageio.save_image` embeds it) holding

* our own properties, in the namespace :data:`NAMESPACE` (prefix ``oldphoto``): the tool and
  version, the model and the sha256 of every network's weights, mode, mask, precision, device,
  bit depth, and the original's file name and sha256;
* the standard ``xmpMM:DerivedFrom`` (the original: its file name and XMP IDs) and an
  ``xmpMM:History`` event ``derived``, so exiftool, digiKam and Adobe tools show it.

The original's own XMP is kept: its properties stay; its document and instance IDs move into
``DerivedFrom``, its history is continued, and a provenance an earlier restoration left is
replaced by this one (its history entry stays). The packet holds no time and no random ID, so
the same photo restored the same way gives the same file; the run manifest records when.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from oldphoto.fsutil import sha256_file

#: Our XMP namespace (a URN: it names, it is not fetched).
NAMESPACE = "urn:oldphoto:xmp:1.0/"
PREFIX = "oldphoto"
_NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "xmpMM": "http://ns.adobe.com/xap/1.0/mm/",
    "stRef": "http://ns.adobe.com/xap/1.0/sType/ResourceRef#",
    "stEvt": "http://ns.adobe.com/xap/1.0/sType/ResourceEvent#",
    PREFIX: NAMESPACE,
}
#: Our simple properties, in the order they are written, and the provenance key each holds.
FIELDS = {
    "Tool": "tool", "Model": "model", "Mode": "mode", "Mask": "mask", "MaskFile": "mask_file",
    "MaskSHA256": "mask_sha256", "Precision": "precision", "Device": "device", "BitDepth": "bits",
    "Original": "original", "OriginalSHA256": "original_sha256",
}
_MOVED = {"DerivedFrom", "InstanceID", "DocumentID", "OriginalDocumentID", "History"}  # xmpMM properties this file gets anew


def _q(prefix: str, name: str) -> str:
    return f"{{{_NS[prefix]}}}{name}"


def restorer_info(restorer: Any, model: str, used: list[str], mode: str, mask: str, bits: int) -> dict[str, Any]:
    """What a :class:`~oldphoto.api.Restorer` knows of one restoration: tool, model, the weights of the
    networks it ran (``used``), mode, mask (``given``, ``detected`` or ``none``), precision, device, bits."""
    from oldphoto import __version__

    precisions = sorted({restorer._precisions.get(name, restorer.precision) for name in used}) or [restorer.precision]
    return {
        "tool": f"oldphoto {__version__}",
        "model": model or "none",
        "weights": {name: restorer._models[name][0].get("weights_sha256", "") for name in used},
        "mode": mode,
        "mask": mask,
        "precision": "+".join(precisions),
        "device": str(restorer.device),
        "bits": bits,
    }


def describe(info: dict[str, Any], original: Path | None = None, mask_file: Path | None = None) -> dict[str, Any]:
    """The full provenance: the restorer's ``info`` (``RestoreResult.provenance``) plus the files it came from."""
    record = dict(info)
    if original is not None:
        record["original"] = original.name
        record["original_sha256"] = sha256_file(original)
    if mask_file is not None:
        record["mask_file"] = mask_file.name
        record["mask_sha256"] = sha256_file(mask_file)
    return record


def build_xmp(record: dict[str, Any], original_xmp: bytes | None = None) -> bytes:
    """An XMP packet holding ``record`` (see :func:`describe`), merged into the original's packet when given."""
    for prefix, uri in _NS.items():
        ET.register_namespace(prefix, uri)
    root, rdf, derived_ids, history = _original_tree(original_xmp)
    ident = str(uuid.UUID(hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]))
    instance = "xmp.iid:" + ident
    desc = ET.SubElement(rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})
    for name, key in FIELDS.items():
        if record.get(key) not in (None, ""):
            ET.SubElement(desc, _q(PREFIX, name)).text = str(record[key])
    bag = ET.SubElement(ET.SubElement(desc, _q(PREFIX, "Weights")), _q("rdf", "Bag"))
    for network, sha in record.get("weights", {}).items():
        ET.SubElement(bag, _q("rdf", "li")).text = f"{network} sha256:{sha}"
    ET.SubElement(desc, _q("xmpMM", "DocumentID")).text = "xmp.did:" + ident
    ET.SubElement(desc, _q("xmpMM", "InstanceID")).text = instance
    first = derived_ids.get("OriginalDocumentID", derived_ids.get("DocumentID"))
    if first:
        ET.SubElement(desc, _q("xmpMM", "OriginalDocumentID")).text = first
    source = ET.SubElement(desc, _q("xmpMM", "DerivedFrom"), {_q("rdf", "parseType"): "Resource"})
    if record.get("original"):
        ET.SubElement(source, _q("stRef", "filePath")).text = record["original"]
    for key, ref in (("InstanceID", "instanceID"), ("DocumentID", "documentID")):
        if key in derived_ids:
            ET.SubElement(source, _q("stRef", ref)).text = derived_ids[key]
    seq = ET.SubElement(ET.SubElement(desc, _q("xmpMM", "History")), _q("rdf", "Seq"))
    seq.extend(history)
    event = ET.SubElement(seq, _q("rdf", "li"), {_q("rdf", "parseType"): "Resource"})
    for name, text in (("action", "derived"), ("parameters", summary(record)), ("softwareAgent", record.get("tool", "")),
                       ("instanceID", instance)):
        ET.SubElement(event, _q("stEvt", name)).text = text
    body = ET.tostring(root, encoding="unicode")
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n' + body + '\n<?xpacket end="w"?>').encode("utf-8")


def summary(record: dict[str, Any]) -> str:
    """One line saying what was done, for the history event and ``oldphoto inspect``."""
    mask = record.get("mask", "none")
    mask_text = "no mask" if mask == "none" else f"{mask} mask" + (f" {record['mask_file']}" if record.get("mask_file") else "")
    source = f" from {record['original']}" if record.get("original") else ""
    return (f"restored by {record.get('tool', '?')}: {record.get('model', '?')} model, {record.get('mode', '?')} mode, "
            f"{mask_text}, {record.get('precision', '?')} on {record.get('device', '?')}, {record.get('bits', '?')}-bit{source}")


def _original_tree(packet: bytes | None) -> tuple[ET.Element, ET.Element, dict[str, str], list[ET.Element]]:
    """The original's x:xmpmeta tree (or a new one) with its IDs and history taken out, and our old fields removed."""
    root = rdf = None
    if packet and b"<!ENTITY" not in packet and b"<!DOCTYPE" not in packet:
        try:
            text = packet.decode("utf-8", errors="replace")
            for prefix, uri in _prefixes(text):
                if prefix and prefix not in _NS:
                    ET.register_namespace(prefix, uri)
            parsed = ET.fromstring(text[text.index("<x:xmpmeta"): text.rindex("</x:xmpmeta>") + 12]
                                   if "<x:xmpmeta" in text else text[text.index("<rdf:RDF"):])
        except (ET.ParseError, ValueError):
            parsed = None
        if parsed is not None:
            root = parsed if parsed.tag == _q("x", "xmpmeta") else ET.Element(_q("x", "xmpmeta"))
            if root is not parsed:
                root.append(parsed)
            rdf = root.find(_q("rdf", "RDF"))
    if root is None or rdf is None:
        root = ET.Element(_q("x", "xmpmeta"))
        rdf = ET.SubElement(root, _q("rdf", "RDF"))
    ids: dict[str, str] = {}
    history: list[ET.Element] = []
    for desc in list(rdf.findall(_q("rdf", "Description"))):
        for attr in list(desc.attrib):
            name = attr.split("}")[-1]
            if attr.startswith(f"{{{_NS['xmpMM']}}}") and name in _MOVED:
                ids[name] = desc.attrib.pop(attr)
            elif attr.startswith(f"{{{NAMESPACE}}}"):
                del desc.attrib[attr]
        for child in list(desc):
            name = child.tag.split("}")[-1]
            if child.tag.startswith(f"{{{_NS['xmpMM']}}}") and name in _MOVED:
                if name == "History":
                    history.extend(child.iter(_q("rdf", "li")))
                elif name in ("InstanceID", "DocumentID", "OriginalDocumentID") and child.text:
                    ids[name] = child.text
                desc.remove(child)
            elif child.tag.startswith(f"{{{NAMESPACE}}}"):
                desc.remove(child)
        if not len(desc) and set(desc.attrib) <= {_q("rdf", "about")}:
            rdf.remove(desc)
    return root, rdf, ids, [li for li in history if li.find(_q("stEvt", "action")) is not None or li.text]


def _prefixes(text: str) -> list[tuple[str, str]]:
    """``xmlns:prefix="uri"`` declarations of an XMP packet, so re-serialising keeps its prefixes."""
    import re

    return re.findall(r'xmlns:([A-Za-z_][\w.-]*)\s*=\s*["\']([^"\']+)["\']', text)


def read_xmp(path: Path | str) -> bytes | None:
    """The XMP packet of an image file (PNG, TIFF, JPEG, WebP), or None."""
    from PIL import Image

    from oldphoto.imageio import xmp_bytes

    with Image.open(path) as image:
        return xmp_bytes(image.info.get("xmp"))


def parse(packet: bytes) -> dict[str, Any] | None:
    """Our provenance read back from an XMP packet (the keys of :data:`FIELDS`' values, plus ``weights``
    and ``history``), or None when the packet has none."""
    try:
        text = packet.decode("utf-8", errors="replace")
        root = ET.fromstring(text[text.index("<x:xmpmeta"): text.rindex("</x:xmpmeta>") + 12])
    except (ET.ParseError, ValueError):
        return None
    record: dict[str, Any] = {}
    for name, key in FIELDS.items():
        element = root.find(f".//{_q(PREFIX, name)}")
        if element is not None:
            record[key] = element.text or ""
    if not record:
        return None
    record["weights"] = {}
    for li in root.iterfind(f".//{_q(PREFIX, 'Weights')}//{_q('rdf', 'li')}"):
        network, _, sha = (li.text or "").partition(" sha256:")
        record["weights"][network] = sha
    record["history"] = [e.text for e in root.iterfind(f".//{_q('stEvt', 'parameters')}")]
    return record
