"""The page every report shares, and the values report templates show.

A report page (templates/page.html.j2) is the version's title, its overview, the sections of
its stage, its lineage and its parameters. A stage's sections are a template of the stage's
package (`tasks/<stage>/templates/report.html.j2`) that its report builder names in the
`ReportSections` it returns; macros.html.j2 has the pieces they share (tables, figures, audio
players, the failures section). Templates are named `<package>:<file>`; a bare `<file>` is one
of this package's. They are read with Jinja2's PackageLoader, so they work from an installed
package as from the checkout, and autoescaped: the values below are plain text and data, and
all markup is in the templates.

Audio is not inlined (it would make reports of a few MB per clip): players point at the object
files by a path relative to the report (`../../../objects/<k2>/<key>/<file>`), which works for
a local store, a copied or moved store and an object-storage bucket served over HTTP alike,
where an absolute `file://` URI would break as soon as the store moves.
"""

from __future__ import annotations

import base64
import json
import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import BaseLoader, Environment, PackageLoader, StrictUndefined

from musika_model.audio import read_audio
from tasks.reports.spectrograms import mel_spectrogram_png
from tasks.store import DatasetVersion
from tasks.store.layout import object_rel, report_rel

TEMPLATES_DIR = "templates"
PAGE_TEMPLATE = "page.html.j2"
BASE_TEMPLATE = "base.html.j2"
MAX_TABLE_ROWS = 200
MAX_CLIPS_PER_SUBJECT = 4  # clips (mel image and player) a report shows of one subject
PAGE_NAMES = frozenset({"title", "overview", "lineage", "parameters", "sections"})
"""What the page template itself shows; a stage's values must be named otherwise."""


# ---- values -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    text: str
    css: str = ""
    """Its class attribute: `num` (right-aligned numbers), `best` (the best value of a column)."""


@dataclass(frozen=True)
class Table:
    """Rows of cells under named columns, at most MAX_TABLE_ROWS of `total` rows."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    total: int

    @property
    def hidden(self) -> int:
        return self.total - len(self.rows)


@dataclass(frozen=True)
class Figure:
    source: str
    """A PNG as a data URI, so the report needs no other file."""
    caption: str
    wide: bool = False
    """Takes the width of the page (two figures share a row otherwise)."""


@dataclass(frozen=True)
class Player:
    label: str
    source: str
    """The audio file's path relative to the report."""


@dataclass(frozen=True)
class Clip:
    """An audio file's mel image and its player."""

    figure: Figure
    player: Player


@dataclass(frozen=True)
class Link:
    text: str
    href: str


@dataclass(frozen=True)
class Lineage:
    parents: tuple[Link, ...]
    """Links to the reports of the parent versions."""
    sources: Table
    extra: Table


@dataclass(frozen=True)
class Failures:
    by_reason: Table
    listed: Table


@dataclass(frozen=True)
class ReportSections:
    """A stage's part of a report: the page's title, the template of the stage's sections
    (`<package>:<file>`) and the values it shows (named other than PAGE_NAMES)."""

    title: str
    template: str
    values: Mapping[str, Any]


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return "" if value is None else str(value)


def _cell(value: Any, best: bool) -> Cell:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return Cell(_text(value), " ".join(css for css, on in (("best", best), ("num", number)) if on))


def table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    highlight: Callable[[Mapping[str, Any], str], bool] | None = None,
) -> Table:
    """A table of dict rows (columns default to every key in order of appearance); `highlight`
    marks the cells that are best in their column."""
    names = (
        tuple(columns) if columns is not None else tuple(dict.fromkeys(k for r in rows for k in r))
    )
    shown = tuple(
        tuple(_cell(row.get(name), bool(highlight and highlight(row, name))) for name in names)
        for row in rows[:MAX_TABLE_ROWS]
    )
    return Table(names, shown, len(rows))


def key_values(mapping: Mapping[str, Any]) -> Table:
    """A two-column table of a flat mapping."""
    return table([{"field": name, "value": value} for name, value in mapping.items()])


def figure(png: bytes, caption: str, wide: bool = False) -> Figure:
    """A PNG inlined as a data URI, with its caption."""
    return Figure(f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}", caption, wide)


def flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted names (`duration_s.mean`); lists stay values."""
    flat: dict[str, Any] = {}
    for name, value in document.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def item_values(version: DatasetVersion, stat: str) -> list[Any]:
    return [item.stats[stat] for item in version.items if stat in item.stats]


def evenly_spaced(count: int, limit: int) -> list[int]:
    """Up to `limit` indices spread over range(count), deterministic (first and last included)."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


class Links:
    """Paths from the report of one version to files in the same store."""

    def __init__(self, version: DatasetVersion) -> None:
        self._folder = posixpath.dirname(report_rel(version.name, version.version))

    def _relative(self, rel: str) -> str:
        return quote(posixpath.relpath(rel, self._folder))

    def object_file(self, key: str, path: str) -> str:
        return self._relative(f"{object_rel(key)}/{path}")

    def report_of(self, ref: str) -> Link:
        name, _, number = ref.rpartition("@")
        return Link(ref, self._relative(report_rel(name, int(number))))

    def audio(self, key: str, path: str, label: str) -> Player:
        return Player(label, self.object_file(key, path))


def listening_gallery(
    folder: Path, key: str, files: Sequence[str], label: str, links: Links
) -> list[Clip]:
    """Per audio file of an object (paths relative to `folder`): its mel image and a player."""
    clips = []
    for rel in files:
        audio, sample_rate = read_audio(folder / rel)
        mel = mel_spectrogram_png(audio, sample_rate, f"{label}: {rel}")
        clips.append(Clip(figure(mel, f"{label} {rel}"), links.audio(key, rel, f"{label}: {rel}")))
    return clips


# ---- the sections several kinds of report share -------------------------------------------------


def failures(version: DatasetVersion) -> Failures:
    """The version's failures, counted by reason and listed."""
    reasons = version.stats.get("failure_reasons") or {}
    return Failures(
        table([{"reason": reason, "items": count} for reason, count in sorted(reasons.items())]),
        table([failure.to_dict() for failure in version.failures]),
    )


def items_table(version: DatasetVersion) -> Table:
    """One row per item: its id, the start of its key, its statistics."""
    return table(
        [
            {"item": item.item_id, "key": item.key[:12], **flatten(item.stats)}
            for item in version.items
        ]
    )


def _overview(version: DatasetVersion) -> Table:
    return key_values(
        {
            "version": version.ref,
            "stage": version.stage,
            "created": version.created_at,
            "items": len(version.items),
            "failures": len(version.failures),
            **{f"total {name}": value for name, value in version.totals.items()},
            "code version": version.lineage.code_version,
        }
    )


def _lineage(version: DatasetVersion, links: Links) -> Lineage:
    lineage = version.lineage
    sources = [
        flatten(source) if isinstance(source, Mapping) else {"source": source}
        for source in lineage.sources
    ]
    return Lineage(
        tuple(links.report_of(ref) for ref in lineage.parents if "@" in ref),
        table(sources),
        key_values(dict(lineage.extra)),
    )


# ---- rendering ----------------------------------------------------------------------------------


class _PackageTemplates(BaseLoader):
    """`<package>:<file>` from `<package>/templates/`; a bare `<file>` from this package's."""

    def __init__(self) -> None:
        self._loaders: dict[str, PackageLoader] = {}

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        package, _, name = template.rpartition(":")
        package = package or __package__
        if package not in self._loaders:
            self._loaders[package] = PackageLoader(package, TEMPLATES_DIR)
        return self._loaders[package].get_source(environment, name)


@cache
def environment() -> Environment:
    return Environment(
        loader=_PackageTemplates(),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=StrictUndefined,
    )


def render_page(version: DatasetVersion, sections: ReportSections) -> str:
    """The report of `version`: the shared page around the stage's sections."""
    clashes = PAGE_NAMES & sections.values.keys()
    if clashes:
        raise ValueError(f"{sections.template}: values named like the page's: {sorted(clashes)}")
    links = Links(version)
    return environment().get_template(PAGE_TEMPLATE).render(
        title=sections.title,
        overview=_overview(version),
        lineage=_lineage(version, links),
        parameters=key_values(flatten(version.params)),
        sections=sections.template,
        **sections.values,
    )


def base_element(href: str) -> str:
    """A `<base href>` element: relative paths of a page resolve against `href`."""
    return environment().get_template(BASE_TEMPLATE).render(href=href)
