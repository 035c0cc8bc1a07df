"""A self-contained HTML report: sections of text, tables and embedded PNG figures."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from mtrs.outdir import write_text

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%}
.note{color:#555;font-size:0.9em}
"""


@dataclass
class Report:
    """Build an HTML report section by section, then :meth:`write` it."""

    title: str
    parts: list[str] = field(default_factory=list)

    def heading(self, text: str) -> None:
        """A section heading."""
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str, note: bool = False) -> None:
        """A paragraph."""
        cls = ' class="note"' if note else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        """A table of already formatted cells."""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
        )
        self.parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def image(self, path: Path, caption: str = "") -> None:
        """Embed a PNG (base64, so the HTML file stands alone)."""
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        self.parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def write(self, path: Path) -> Path:
        """Write the page."""
        body = "\n".join(self.parts)
        write_text(
            path,
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}"
            f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>"
            f"{body}</body></html>",
        )
        return path
