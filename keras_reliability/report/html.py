"""The report page: one self-contained HTML file, images embedded as data URIs."""

import base64
import dataclasses
import html
import math

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; }
.meta { color: #555; margin-top: 0; }
section { margin-top: 2em; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
caption { text-align: left; color: #555; padding-bottom: 0.3em; }
.note { color: #555; }
"""


@dataclasses.dataclass
class Image:
    """A PNG for the page; `tag` is its id (and TensorBoard tag)."""

    tag: str
    caption: str
    png: bytes


@dataclasses.dataclass
class Table:
    """A table: `rows` hold strings or numbers, numbers are formatted."""

    caption: str
    header: list
    rows: list
    id: str = ""


@dataclasses.dataclass
class Section:
    title: str
    images: list = dataclasses.field(default_factory=list)
    tables: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)


def format_number(value):
    """How every number appears on the page: 4 significant digits, or "-"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:.4g}"
    return str(value)


def render(title, meta, sections):
    """The page as a string: a title, lines of `meta`, then the sections."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    parts += [f'<p class="meta">{html.escape(line)}</p>' for line in meta]
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        parts += [f'<p class="note">{html.escape(note)}</p>' for note in section.notes]
        parts += [_table(table) for table in section.tables]
        parts += [_image(image) for image in section.images]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _image(image):
    data = base64.b64encode(image.png).decode("ascii")
    caption = html.escape(image.caption)
    return (
        f'<figure id="{html.escape(image.tag)}"><img src="data:image/png;base64,{data}" '
        f'alt="{caption}"><figcaption>{caption}</figcaption></figure>'
    )


def _table(table):
    id_attribute = f' id="{html.escape(table.id)}"' if table.id else ""
    header = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in table.header)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(format_number(cell))}</td>" for cell in row) + "</tr>"
        for row in table.rows
    )
    return (
        f"<table{id_attribute}><caption>{html.escape(table.caption)}</caption>"
        f"<thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"
    )
