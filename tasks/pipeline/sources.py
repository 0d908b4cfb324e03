"""Resolve user-given sources (folders, globs, files) into files with stable item names and digests."""

from __future__ import annotations

import glob
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tasks.store import file_digest

MIDI_EXTENSIONS = frozenset({".mid", ".midi", ".kar"})
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".mp3", ".ogg"})


class SourceNotFound(FileNotFoundError):
    """A source path or pattern that names nothing: almost always a typo, so the run stops early."""


@dataclass(frozen=True)
class SourceFile:
    """One input file; `name` is its item name: the path below the folder or glob base it was found in."""

    path: Path
    name: str
    digest: str

    def to_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "name": self.name, "digest": self.digest}


@dataclass
class ResolvedSources:
    files: list[SourceFile] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    """Files whose content equals an earlier file's: kept once, recorded here."""


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    static = []
    for part in parts:
        if glob.has_magic(part):
            break
        static.append(part)
    return Path(*static) if static else Path(".")


def _expand(spec: str, extensions: Collection[str]) -> list[tuple[Path, str]]:
    """(file, item name) pairs for one source spec."""
    path = Path(spec).expanduser()
    if glob.has_magic(spec):
        base = _glob_base(spec)
        matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        found = [p for p in matches if p.is_file()]
        if not found:
            raise SourceNotFound(f"the pattern {spec!r} matches no file")
        return [(p, p.relative_to(base).as_posix()) for p in found]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        if not found:
            raise SourceNotFound(f"the folder {spec!r} holds no file ending in {', '.join(sorted(extensions))}")
        return [(p, f"{path.resolve().name}/{p.relative_to(path).as_posix()}") for p in found]
    if path.is_file():
        return [(path, path.name)]
    raise SourceNotFound(f"the source {spec!r} does not exist")


def source_files(specs: Sequence[str], extensions: Collection[str]) -> list[tuple[Path, str]]:
    """(file, item name) of every spec, without reading the files: SourceNotFound names the first
    spec that finds nothing (the CLI checks this before Prefect starts)."""
    if not specs:
        raise SourceNotFound("no sources were given")
    return [found for spec in specs for found in _expand(spec, extensions)]


def resolve_sources(specs: Sequence[str], extensions: Collection[str]) -> ResolvedSources:
    """Expand every spec, hash every file, keep each distinct content once under a unique name."""
    resolved = ResolvedSources()
    seen_digests: dict[str, str] = {}
    used_names: set[str] = set()
    for path, name in source_files(specs, extensions):
        digest = file_digest(path)
        if digest in seen_digests:
            resolved.duplicates.append({"path": str(path), "same_as": seen_digests[digest]})
            continue
        if name in used_names:
            name = f"{name}~{digest.split(':', 1)[1][:8]}"
        used_names.add(name)
        seen_digests[digest] = name
        resolved.files.append(SourceFile(path.resolve(), name, digest))
    return resolved
