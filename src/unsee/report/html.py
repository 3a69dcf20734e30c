"""A self-contained HTML report: headings, text, tables and images, nothing fetched online.

Images are linked by paths relative to the report, so the folder can be moved or served
as it is; every text is escaped. Written atomically, like every other output.
"""

import html
import os
from dataclasses import dataclass, field
from pathlib import Path

from unsee.imageset import atomic_write_text

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #1d1d1f; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figure img { image-rendering: pixelated; max-width: 100%; border: 1px solid #ccc; }
figcaption { font-size: 0.9em; color: #555; }
.bar { display: inline-block; height: 0.9em; background: #c0392b; vertical-align: middle; }
.bar.second { background: #2e86c1; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
"""


@dataclass
class Section:
    heading: str
    text: str = ""
    header: list[str] = field(default_factory=list)  # table columns
    rows: list[list] = field(default_factory=list)  # table rows (numbers are formatted)
    bars: dict[str, float] = field(default_factory=dict)  # label -> value in [0, 1]
    pairs: dict[str, tuple[float, float]] = field(default_factory=dict)  # two bars a label
    pair_labels: tuple[str, str] = ("", "")
    images: list[tuple[str, Path]] = field(default_factory=list)  # (caption, file)
    code: str = ""  # a command to show as it is


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _width(value: float) -> float:
    """Bar length in pixels of a value in [0, 1] (clipped)."""
    return max(0.0, min(1.0, float(value))) * 300


def render(title: str, sections: list[Section], where: Path) -> str:
    """The page for a report that will live in folder `where` (image links relative to it)."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.heading)}</h2>")
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        if s.code:
            parts.append(f"<pre>{html.escape(s.code)}</pre>")
        if s.rows:
            parts.append(
                "<table><tr>" + "".join(f"<th>{_cell(h)}</th>" for h in s.header) + "</tr>"
            )
            for row in s.rows:
                parts.append("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>")
            parts.append("</table>")
        if s.bars:
            parts.append("<table>")
            for label, value in s.bars.items():
                width = _width(value)
                parts.append(
                    f"<tr><td>{html.escape(label)}</td><td>{value:.3f}</td>"
                    f'<td style="text-align:left"><span class="bar" style="width:{width:.0f}px">'
                    "</span></td></tr>"
                )
            parts.append("</table>")
        if s.pairs:
            parts.append(
                f'<p><span class="bar" style="width:1em"></span> {html.escape(s.pair_labels[0])}'
                f' &nbsp; <span class="bar second" style="width:1em"></span>'
                f" {html.escape(s.pair_labels[1])}</p><table>"
            )
            for label, values in s.pairs.items():
                bars = "<br>".join(
                    f'<span class="bar{cls}" style="width:{_width(v):.0f}px"></span> {v:.3f}'
                    for v, cls in zip(values, ("", " second"), strict=True)
                )
                parts.append(
                    f'<tr><td>{html.escape(label)}</td><td style="text-align:left">{bars}</td></tr>'
                )
            parts.append("</table>")
        for caption, path in s.images:
            link = Path(os.path.relpath(Path(path).resolve(), Path(where).resolve())).as_posix()
            parts.append(
                f'<figure><img src="{html.escape(link)}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(path: Path, title: str, sections: list[Section]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, render(title, sections, path.parent))
    return path
