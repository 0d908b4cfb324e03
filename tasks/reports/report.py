"""HTML reports of dataset versions, stored beside the version, and their Prefect side.

A report is one self-contained HTML file (page.py, templates/): plots inlined as base64 PNG data
URIs, inline CSS, no JavaScript, no external assets, so it opens offline from anywhere. What a
version's report shows beyond the shared page is up to its stage: the stage's `StageSpec.report`
(tasks.pipeline.registry) builds its sections; a stage without one gets the generic sections
(statistics, items, failures). A copy written elsewhere (`musika-piano report --output`) gets a
`<base href>` at the report's store folder, so its audio still plays from the store.

Stored at `<store root>/datasets/<name>/reports/<NNNNNN>.html` (`ArtifactStore.write_report`).
The builders are pure (store in, HTML string out); `publish_report` is the thin Prefect task.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from tasks.pipeline.artifact_keys import artifact_key
from tasks.pipeline.registry import spec_for
from tasks.reports.page import (
    ReportSections,
    base_element,
    failures,
    flatten,
    items_table,
    key_values,
    render_page,
)
from tasks.store import ArtifactStore, DatasetVersion
from tasks.store.layout import report_rel
from tasks.store.links import store_link

GENERIC_TEMPLATE = "generic.html.j2"


def report_artifact_key(name: str) -> str:
    """`report-<name>` in the lowercase letters, digits and dashes Prefect artifact keys allow."""
    return artifact_key(name, "report")


def generic_sections(store: ArtifactStore, version: DatasetVersion) -> ReportSections:
    """Statistics, items and failures of a version of a stage without its own report."""
    return ReportSections(
        f"{version.ref} ({version.stage})",
        GENERIC_TEMPLATE,
        {
            "statistics": key_values(flatten(version.stats)),
            "items": items_table(version),
            "failures": failures(version),
        },
    )


def build_report(store: ArtifactStore, version: DatasetVersion) -> str:
    """The HTML report of `version`, with the sections its stage's spec builds."""
    spec = spec_for(version.stage)
    builder = spec.report if spec is not None and spec.report is not None else generic_sections
    return render_page(version, builder(store, version))


def write_report(store: ArtifactStore, ref: str) -> str:
    """Build the report of `ref` and store it beside the version; returns its location (URI)."""
    version = store.resolve(ref)
    return store.write_report(version.name, version.version, build_report(store, version))


def copy_report(store: ArtifactStore, ref: str, output: Path) -> Path:
    """Copy the stored report of `ref` to `output`, with a <base> at its store folder so the audio
    players still find the store's files."""
    version = store.resolve(ref)
    folder = posixpath.dirname(store.report_uri(version.name, version.version)) + "/"
    stored = store.backend.read_bytes(report_rel(version.name, version.version)).decode()
    based = stored.replace("<head>", "<head>" + base_element(folder), 1)
    partial = output.with_name(f".{output.name}.partial")
    partial.write_text(based)
    os.replace(partial, output)
    return output


def report_and_link(store: ArtifactStore, ref: str) -> str:
    """Write the report of `ref`, attach an artifact `report-<name>` linking it (or showing its
    path: `tasks.store.links`) to the current run and log where it is; returns its URI. Needs a
    Prefect run context (a flow or task run)."""
    version = store.resolve(ref)
    link = store_link(store, report_rel(version.name, version.version))
    location = write_report(store, version.ref)
    create_markdown_artifact(
        key=report_artifact_key(version.name),
        markdown=link.markdown(f"report of {version.ref}"),
        description=f"HTML report of **{version.ref}** (stage {version.stage})",
    )
    get_run_logger().info("report of %s at %s", version.ref, link.location)
    return location


def report_or_warn(store: ArtifactStore, ref: str) -> str | None:
    """`report_and_link`, except that a failure is logged as a warning (returning None): a report
    is a view of a version and must never fail the publish that made the version."""
    try:
        return report_and_link(store, ref)
    except Exception as error:  # noqa: BLE001 - whatever went wrong, the version stays published
        reason = f"{type(error).__name__}: {error}"
        get_run_logger().warning("no report written for %s: %s", ref, reason)
        return None


@task(name="publish-report")
def publish_report(store_root: str, ref: str) -> str:
    """Write the report of `ref` into the store and link it from a `report-<name>` artifact."""
    return report_and_link(ArtifactStore(store_root), ref)
