"""The page: one self-contained HTML file (page.html, page.css and page.js inlined, the data as
embedded JSON), opened from the file system with no server and no network.

The attention patterns (most of the bytes) are one zlib-compressed byte string, base64 in the
page, inflated by the browser's own `DecompressionStream`; everything else is plain JSON with
rounded floats.
"""
from __future__ import annotations

import base64
import zlib
from pathlib import Path

from lab.io import atomic_write_bytes, dumps
from lab.rundir import git_commit

from ..images.render import grid_rgb
from ..task import Vocab

HERE = Path(__file__).parent


class AttentionBlob:
    """Every example's attention bytes, one after the other; an example keeps its offset."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> int:
        offset = self.size
        self.parts.append(data)
        self.size += len(data)
        return offset

    def encoded(self) -> str:
        return base64.b64encode(zlib.compress(b"".join(self.parts), 9)).decode()


def vocab_entries(vocab: Vocab) -> dict:
    """Token id -> word, and colour token id -> the RGB its name stands for (rgbRGB: grid levels)."""
    colours = {t: "#%02x%02x%02x" % tuple(grid_rgb((t - vocab.color0) % 216))
               for t in range(vocab.color0, vocab.shape0)}
    return {"words": [vocab.word(t) for t in range(vocab.size)], "color0": vocab.color0, "shape0": vocab.shape0,
            "item0": vocab.item0, "colours": colours}


def render_html(data: dict, blob: AttentionBlob) -> str:
    payload = dumps({**data, "git_commit": git_commit()}, separators=(",", ":")).replace("</", "<\\/")
    html = (HERE / "page.html").read_text()
    return (html.replace("/*STYLE*/", (HERE / "page.css").read_text())
                .replace("/*SCRIPT*/", (HERE / "page.js").read_text())
                .replace("{{DATA}}", payload)
                .replace("{{ATTENTION}}", blob.encoded()))


def write_page(out: Path, data: dict, blob: AttentionBlob) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    page = render_html(data, blob).encode()
    atomic_write_bytes(out / "index.html", page)
    return {"path": str(out / "index.html"), "bytes": len(page), "examples": len(data["examples"]),
            "attention_bytes": blob.size}
