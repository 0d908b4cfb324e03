"""Keys of the Prefect artifacts the project attaches to runs (dataset tables, reports, training
progress), in the alphabet Prefect allows for artifact keys."""

from __future__ import annotations

import re


def artifact_key(name: str, kind: str = "dataset") -> str:
    """`<kind>-<name>` as a Prefect artifact key (lowercase letters, digits and dashes only)."""
    return f"{kind}-" + re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
