"""A self-contained HTML page from a report's Markdown text and its figures (the video
and example-importance reports): every string escaped, no script, a strict Content
Security Policy (images from the report's own folder only)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["inline", "markdown_page"]

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;font-size:12px;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
    "td:first-child,td:nth-child(2),th{text-align:left}img{max-width:100%}"
    "p.item{margin:0.2em 0}"
)


def inline(text: str) -> str:
    """Escape ``text``, then render ``**bold**``, ``*italic*`` and ```code```."""
    t = html.escape(text).replace("\\*", "\x00")
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<i>\1</i>", t)
    t = re.sub(r"`(.+?)`", r"<code>\1</code>", t)
    return t.replace("\x00", "*")


def markdown_page(
    markdown_text: str,
    figures: Mapping[str, Path],
    out: Path,
    *,
    title: str,
    caption: Callable[[str], str] = str,
) -> str:
    """The page: headings, bullet items, paragraphs and pipe tables of ``markdown_text``
    (image lines are skipped: ``figures`` are shown instead, each with ``caption(key)``
    and its path relative to ``out``)."""
    body: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if not table:
            return
        rows = [r.strip().strip("|").split(" | ") for r in table if not set(r) <= set("|-: ")]
        h = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        b = "".join(
            "<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:]
        )
        body.append(f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>")
        table.clear()

    for line in markdown_text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("!["):
            continue
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 4)
            body.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("- "):
            body.append(f"<p class='item'>• {inline(line[2:])}</p>")
        elif line.strip():
            body.append(f"<p>{inline(line)}</p>")
    flush()
    for key, path in figures.items():
        rel = html.escape(Path(path).relative_to(out).as_posix(), quote=True)
        body.append(
            f"<figure><img src='{rel}' alt='{html.escape(key, quote=True)}'>"
            f"<figcaption>{html.escape(caption(key))}</figcaption></figure>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "img-src 'self'; style-src 'unsafe-inline'\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
