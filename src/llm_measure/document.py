"""A report's content as blocks (headings, paragraphs, lists, tables, images), rendered to
markdown and to self-contained HTML, and the formatting of an estimate with its interval.

It sits in the bottom layer (beside ``errors`` and ``paths``) and imports nothing of the
library: the generic report (``llm_measure.reporting``), the fit's report.md and each
family's own report sections (``families/*/report.py``) all write into the same
:class:`Document`, and families may not import the reporting layer above them.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Block:
    kind: str  # "h1", "h2", "p", "list", "lines", "table", "image"
    # text for a heading or paragraph, lines for "list" and "lines", a DataFrame for a
    # table, the PNG's path for an image (the methods of Document pair them so)
    content: str | list[str] | pd.DataFrame | Path


class Document:
    def __init__(self) -> None:
        self.blocks: list[Block] = []

    def h1(self, text: str) -> None:
        self.blocks.append(Block("h1", text))

    def h2(self, text: str) -> None:
        self.blocks.append(Block("h2", text))

    def p(self, text: str) -> None:
        self.blocks.append(Block("p", text))

    def bullets(self, items: list[str]) -> None:
        """A bulleted list (nothing when ``items`` is empty)."""
        if items:
            self.blocks.append(Block("list", list(items)))

    def lines(self, lines: list[str]) -> None:
        """Markdown lines kept together as written (e.g. a list whose items run over
        several lines); nothing when ``lines`` is empty."""
        if lines:
            self.blocks.append(Block("lines", list(lines)))

    def table(self, df: pd.DataFrame) -> None:
        self.blocks.append(Block("table", df))

    def image(self, path: Path | str) -> None:
        self.blocks.append(Block("image", Path(path)))

    def markdown(self) -> str:
        out: list[str] = []
        for b in self.blocks:
            if b.kind in ("h1", "h2"):
                assert isinstance(b.content, str)
                out.append(("# " if b.kind == "h1" else "## ") + b.content)
            elif b.kind == "p":
                assert isinstance(b.content, str)
                out.append(b.content)
            elif b.kind == "list":
                assert isinstance(b.content, list)
                out += [f"- {item}" for item in b.content]
            elif b.kind == "lines":
                assert isinstance(b.content, list)
                out += b.content
            elif b.kind == "table":
                df = b.content
                assert isinstance(df, pd.DataFrame)
                out.append("| " + " | ".join(map(str, df.columns)) + " |")
                out.append("|" + "---|" * len(df.columns))
                out += [
                    "| " + " | ".join(map(str, row)) + " |" for row in df.itertuples(index=False)
                ]
            elif b.kind == "image":
                assert isinstance(b.content, Path)
                out.append(f"![{b.content.stem}]({b.content.name})")
            out.append("")
        return "\n".join(out)

    def html(self, title: str) -> str:
        head = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>"
            f"{html.escape(title)}</title><style>body{{font-family:sans-serif;"
            "max-width:1100px;margin:2em auto;line-height:1.45}"
            "table{border-collapse:collapse;font-size:0.85em}"
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
            "img{max-width:100%}</style></head><body>"
        )
        out = [head]
        for b in self.blocks:
            if b.kind in ("h1", "h2"):
                assert isinstance(b.content, str)
                out.append(f"<{b.kind}>{html.escape(b.content)}</{b.kind}>")
            elif b.kind == "p":
                assert isinstance(b.content, str)
                out.append(inline_html(b.content))
            elif b.kind == "list":
                assert isinstance(b.content, list)
                out.append("<ul>" + "".join(f"<li>{inline_html(i)}</li>" for i in b.content))
                out.append("</ul>")
            elif b.kind == "lines":
                assert isinstance(b.content, list)
                out.append(inline_html("\n".join(b.content)))
            elif b.kind == "table":
                assert isinstance(b.content, pd.DataFrame)
                out.append(b.content.to_html(index=False, border=0, escape=True))
            elif b.kind == "image":
                assert isinstance(b.content, Path)
                data = base64.b64encode(b.content.read_bytes()).decode("ascii")
                out.append(
                    f"<p><img alt='{b.content.stem}' src='data:image/png;base64,{data}'></p>"
                )
        out.append("</body></html>")
        return "\n".join(out)


def inline_html(text: str) -> str:
    """A paragraph of the report's markdown as HTML with the same emphasis (bold, italic,
    code), by the ``markdown`` package; the text is escaped first, so it stays text."""
    import markdown

    return markdown.markdown(html.escape(text, quote=False))


DPI = 300  # publication resolution; the PDF beside each PNG is vector


def save_figure(target: Any, path: Path | str) -> Path:
    """Write ``target`` (a matplotlib figure or an arviz-plots PlotCollection: anything with
    ``savefig``) as PNG at :data:`DPI` and as PDF; return the PNG's path."""
    path = Path(path)
    for suffix, extra in ((".png", {"dpi": DPI}), (".pdf", {})):
        target.savefig(path.with_suffix(suffix), bbox_inches="tight", **extra)
    return path.with_suffix(".png")


# marks an interval that leaves the statistic's range (explained under the table)
OUT_OF_RANGE = "‡"


def fmt(estimate: float, lo: float, hi: float, bounds: tuple[float, float] | None = None) -> str:
    """``estimate [lo, hi]``; "undefined" for a statistic the data cannot give (explained
    under the table), and ``OUT_OF_RANGE`` after an interval that leaves ``bounds``."""
    text = f"{estimate:.2f}" if np.isfinite(estimate) else "undefined"
    if np.isfinite(lo) and np.isfinite(hi):
        text += f" [{lo:.2f}, {hi:.2f}]"
        if bounds is not None and (lo < bounds[0] or hi > bounds[1]):
            text += f" {OUT_OF_RANGE}"
    elif np.isfinite(estimate):
        text += " [no interval]"
    return text


def explain_cells(
    doc: Document, cells: Iterable[object], undefined: str, out_of_range: str = ""
) -> None:
    """A sentence under a table for each kind of cell a reader cannot take at face value."""
    texts = [str(c) for c in cells]
    n_undefined = sum(c.startswith("undefined") or "[no interval]" in c for c in texts)
    n_out = sum(c.endswith(OUT_OF_RANGE) for c in texts)
    if n_undefined:
        doc.p(f"*undefined / no interval* ({n_undefined} cells): {undefined}")
    if n_out and out_of_range:
        doc.p(f"*{OUT_OF_RANGE}* ({n_out} cells): {out_of_range}")
