"""Verify the store and repair it: which dataset versions need an object (directly or through
the objects made from it), what makes it again, and moving damaged things to quarantine."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from tasks.store.canonical import is_object_key, validate_object_key
from tasks.store.errors import (
    REPAIR_COMMAND,
    CorruptManifestError,
    CorruptVersionError,
    ObjectNotFoundError,
)
from tasks.store.integrity import DAMAGE_KINDS, ObjectCheck, check_object, describe_damage
from tasks.store.layout import REPAIR_NOTE_NAME, marker_rel, version_rel
from tasks.store.models import DatasetVersion, ObjectManifest, Repair, VerifyProblem, VerifyReport
from tasks.store.quarantine import QuarantineFolder

if TYPE_CHECKING:
    from tasks.store.artifact_store import ArtifactStore

NOTHING_TO_REBUILD = "nothing has to be rebuilt (no dataset version needs it)"


# ---------------------------------------------------------------------- who needs an object


def object_inputs(manifest: ObjectManifest) -> list[str]:
    """The inputs of an object that are store objects: as its manifest records them, or, in a
    manifest older than that record, every input shaped like an object key."""
    if manifest.input_objects is not None:
        return manifest.input_objects
    return [entry for entry in manifest.inputs if is_object_key(entry)]


class _Needs:
    """Which dataset versions need an object: they list it, or list an object made from it
    (through the input keys objects record). Manifests are read once, when first needed."""

    def __init__(
        self,
        store: ArtifactStore,
        versions: list[DatasetVersion],
        manifests: Mapping[str, ObjectManifest | None],
    ) -> None:
        self._store = store
        self._manifests: dict[str, ObjectManifest | None] = dict(manifests)
        self._marked: dict[str, bool] = {}
        self.listed_in: dict[str, list[DatasetVersion]] = {}
        self._latest: dict[str, int] = {}
        for version in versions:
            for key in dict.fromkeys(version.keys):
                self.listed_in.setdefault(key, []).append(version)
            self._latest[version.name] = max(version.version, self._latest.get(version.name, 0))
        self._needed_by: dict[str, set[str]] | None = None

    def manifest(self, key: str) -> ObjectManifest | None:
        if key not in self._manifests:
            try:
                self._manifests[key] = self._store.manifest(key)
            except (ObjectNotFoundError, CorruptManifestError):
                self._manifests[key] = None
        return self._manifests[key]

    def marked(self, key: str) -> bool:
        """The object is complete (its marker exists); whether it is intact is checked elsewhere."""
        if key not in self._marked:
            self._marked[key] = self._store.backend.exists(marker_rel(key))
        return self._marked[key]

    def reachable(self) -> list[str]:
        """Keys the versions list, then the object keys among their inputs, transitively."""
        order: dict[str, None] = {}
        pending = list(self.listed_in)
        while pending:
            key = pending.pop()
            if key in order:
                continue
            order[key] = None
            manifest = self.manifest(key) if self.marked(key) else None
            if manifest is not None:
                pending.extend(object_inputs(manifest))
        return list(order)

    def versions_needing(self, key: str) -> list[DatasetVersion]:
        if self._needed_by is None:
            self._needed_by = {}
            for user in self.reachable():
                manifest = self.manifest(user) if self.marked(user) else None
                for entry in manifest.inputs if manifest is not None else []:
                    self._needed_by.setdefault(entry, set()).add(user)
        seen = {key}
        pending = [key]
        found: dict[str, DatasetVersion] = {}
        while pending:
            current = pending.pop()
            for version in self.listed_in.get(current, []):
                found[version.ref] = version
            for user in self._needed_by.get(current, set()) - seen:
                seen.add(user)
                pending.append(user)
        return sorted(found.values(), key=lambda version: (version.name, version.version))

    def listing(self, key: str) -> tuple[str | None, str | None]:
        """(stage, item id) of the object as the newest version listing it says (for an object
        whose own manifest is unreadable)."""
        for version in reversed(self.listed_in.get(key, [])):
            for item in version.items:
                if item.key == key:
                    return version.stage, item.item_id
        return None, None

    def rebuild(self, keys: Iterable[str]) -> str:
        """What makes these objects again: re-running the build of the datasets that need them."""
        needing = {
            version.ref: version for key in keys for version in self.versions_needing(key)
        }
        return rebuild_advice(list(needing.values()), self._latest)


def rebuild_advice(needing: Sequence[DatasetVersion], latest: Mapping[str, int]) -> str:
    """One sentence: re-run the build of each dataset whose newest readable version needs the
    objects; name older versions that alone need them (their build settings may be gone)."""
    if not needing:
        return NOTHING_TO_REBUILD
    current = {
        version.name: version.stage
        for version in needing
        if version.version == latest.get(version.name)
    }
    older = sorted({version.ref for version in needing if version.name not in current})
    parts = []
    if current:
        datasets = ", ".join(f"{name} (stage {stage})" for name, stage in sorted(current.items()))
        parts.append(
            f"re-run the build of dataset {datasets} (the musika-piano command: dataset "
            "midi|audio|youtube, encode, train ..., or the deployment that made it); intact "
            "objects are reused, missing ones made again under the same keys"
        )
    if older:
        parts.append(
            f"older versions need it ({', '.join(older)}): a build with the sources and settings "
            "that `musika-piano dataset show` lists for them makes it again"
        )
    return "; ".join(parts)


# ---------------------------------------------------------------------- verify and repair


def verify_store(
    store: ArtifactStore, keys: Sequence[str] | None = None, *, repair: bool = False
) -> VerifyReport:
    """Re-hash every file of every complete object (or of ``keys``) against its manifest.

    Without ``keys`` it also reads every dataset version and checks that the objects they list,
    and transitively the objects those were made from (their recorded input keys), are present;
    with ``keys``, the inputs of those objects. Every problem gets a ``fix``. With ``repair``,
    damaged objects, stray files and unreadable version files move to a new quarantine folder
    (``tasks.store.layout``) and ``repairs`` says what moved, who needed it and what rebuilds it.
    """
    backend = store.backend
    whole_store = keys is None
    problems: list[VerifyProblem] = []
    versions: list[DatasetVersion] = []
    corrupt_versions: list[CorruptVersionError] = []
    for name in store.dataset_names():
        for number in store.version_numbers(name):
            try:
                versions.append(store.read_version(name, number))
            except CorruptVersionError as error:
                corrupt_versions.append(error)
    if whole_store:
        problems.extend(
            VerifyProblem(
                "corrupt_dataset",
                f"{error.name}@{error.version}",
                version_rel(error.name, error.version),
                error.reason,
            )
            for error in corrupt_versions
        )

    candidates = (
        list(store.iter_object_dirs()) if whole_store else [validate_object_key(k) for k in keys]
    )
    checks: dict[str, ObjectCheck] = {}
    incomplete = 0
    for key in candidates:
        try:
            if not backend.exists(marker_rel(key)):
                raise ObjectNotFoundError(key)
            checks[key] = check_object(store, key, full=True)
        except ObjectNotFoundError:
            if whole_store:
                incomplete += 1
            else:
                problems.append(
                    VerifyProblem("missing_object", key, None, "no complete object under this key")
                )
            continue
        problems.extend(checks[key].problems)

    needs = _Needs(store, versions, {key: check.manifest for key, check in checks.items()})
    lacking = [key for key, check in checks.items() if check.damage]
    lacking += [problem.subject for problem in problems if problem.kind == "missing_object"]
    if whole_store:
        for version in versions:
            for item in version.items:
                if not needs.marked(item.key):
                    lacking.append(item.key)
                    problems.append(
                        VerifyProblem(
                            "dataset_missing_object",
                            version.ref,
                            item.item_id,
                            f"object {item.key} is not in the store",
                            needs.rebuild([item.key]),
                        )
                    )
    for key in needs.reachable() if whole_store else list(checks):
        manifest = needs.manifest(key) if needs.marked(key) else None
        for entry in (manifest.input_objects or []) if manifest is not None else []:
            if not needs.marked(entry):
                lacking.append(entry)
                problems.append(
                    VerifyProblem(
                        "missing_input",
                        key,
                        entry,
                        f"this {manifest.stage} object (item {manifest.item}) was made from "
                        f"object {entry}, which is not in the store",
                        needs.rebuild([key]),
                    )
                )

    folder = QuarantineFolder(backend) if repair else None
    if folder is not None:
        _repair(folder, needs, checks, corrupt_versions if whole_store else [])
    problems = [_with_fix(problem, needs, folder) for problem in problems]
    return VerifyReport(
        objects_checked=len(checks),
        files_checked=sum(check.files_checked for check in checks.values()),
        bytes_hashed=sum(check.bytes_hashed for check in checks.values()),
        dataset_versions_checked=len(versions) if whole_store else 0,
        incomplete_objects=incomplete,
        problems=problems,
        repairs=list(folder.repairs) if folder is not None else [],
        quarantine=folder.uri if folder is not None and folder.repairs else None,
        next_steps=_next_steps(problems, needs.rebuild(lacking) if lacking else "", folder),
    )


def _repair(
    folder: QuarantineFolder,
    needs: _Needs,
    checks: Mapping[str, ObjectCheck],
    corrupt_versions: Sequence[CorruptVersionError],
) -> None:
    """Move damaged objects, stray files and unreadable version files into ``folder``."""
    for key, check in checks.items():
        if check.damage:
            try:
                moved = folder.move_object(key)
            except FileNotFoundError:  # gone meanwhile
                continue
            stage, item = (
                (check.manifest.stage, check.manifest.item)
                if check.manifest is not None
                else needs.listing(key)
            )
            folder.repairs.append(
                Repair(
                    kind="object",
                    subject=key,
                    moved_to=moved,
                    reason=describe_damage(check.damage),
                    stage=stage,
                    item=item,
                    referenced_by=[version.ref for version in needs.versions_needing(key)],
                    rebuild=needs.rebuild([key]),
                )
            )
            continue
        strays = [
            problem.path
            for problem in check.problems
            if problem.kind == "unexpected_file" and problem.path
        ]
        if strays and check.manifest is not None:
            folder.repairs.append(
                Repair(
                    kind="stray_files",
                    subject=key,
                    moved_to=folder.move_files(key, strays),
                    reason=f"not listed in the manifest: {', '.join(strays)}",
                    stage=check.manifest.stage,
                    item=check.manifest.item,
                    referenced_by=[],
                    rebuild="",
                )
            )
    for error in corrupt_versions:
        try:
            moved = folder.move_version(error.name, error.version)
        except FileNotFoundError:
            continue
        folder.repairs.append(
            Repair(
                kind="dataset_version",
                subject=f"{error.name}@{error.version}",
                moved_to=moved,
                reason=error.reason,
                stage=None,
                item=None,
                referenced_by=[],
                rebuild=(
                    f"the next build of dataset {error.name} publishes a new version (number "
                    f"{error.version} is not reused)"
                ),
            )
        )
    folder.write_note()


def _with_fix(
    problem: VerifyProblem, needs: _Needs, folder: QuarantineFolder | None
) -> VerifyProblem:
    """The problem with ``fix`` filled in: what to do, or what the repair did."""
    if problem.fix:
        return problem
    moved = {
        (repair.kind, repair.subject): repair.moved_to
        for repair in (folder.repairs if folder is not None else [])
    }
    key = problem.subject
    if problem.kind in DAMAGE_KINDS or (
        problem.kind == "unexpected_file" and ("object", key) in moved
    ):
        rebuild = needs.rebuild([key])
        if ("object", key) in moved:
            return _fixed(problem, f"moved to quarantine ({moved['object', key]}); {rebuild}")
        return _fixed(
            problem, f"run `{REPAIR_COMMAND}` to move the object to quarantine, then {rebuild}"
        )
    if problem.kind == "unexpected_file":
        if ("stray_files", key) in moved:
            return _fixed(
                problem,
                f"moved to quarantine ({moved['stray_files', key]}); the files the manifest lists "
                "are intact",
            )
        return _fixed(
            problem,
            f"run `{REPAIR_COMMAND}` to move the file to quarantine; the files the manifest "
            "lists are intact",
        )
    if problem.kind == "corrupt_dataset":
        name = key.partition("@")[0]
        if ("dataset_version", key) in moved:
            return _fixed(
                problem,
                f"moved to quarantine ({moved['dataset_version', key]}); the next build of dataset "
                f"{name} publishes a new version and does not reuse this number",
            )
        return _fixed(
            problem,
            f"run `{REPAIR_COMMAND}` to move the file to quarantine (or delete it); the next "
            f"build of dataset {name} publishes a new version past it either way",
        )
    if problem.kind == "missing_object":
        return _fixed(problem, needs.rebuild([key]))
    return problem


def _fixed(problem: VerifyProblem, fix: str) -> VerifyProblem:
    return VerifyProblem(problem.kind, problem.subject, problem.path, problem.detail, fix)


def _next_steps(
    problems: Sequence[VerifyProblem], rebuild: str, folder: QuarantineFolder | None
) -> list[str]:
    """What to do now, one line each: repair what a repair can move, then ``rebuild``."""
    moved = {
        repair.subject for repair in (folder.repairs if folder is not None else [])
    }
    movable: dict[str, set[str]] = {
        "damaged object(s)": set(),
        "stray file(s)": set(),
        "unreadable version file(s)": set(),
    }
    for problem in problems:
        if problem.subject in moved:
            continue
        if problem.kind in DAMAGE_KINDS:
            movable["damaged object(s)"].add(problem.subject)
        elif problem.kind == "unexpected_file":
            movable["stray file(s)"].add(f"{problem.subject}/{problem.path}")
        elif problem.kind == "corrupt_dataset":
            movable["unreadable version file(s)"].add(problem.subject)
    steps = []
    counts = [f"{len(found)} {what}" for what, found in movable.items() if found]
    if counts:
        steps.append(f"run `{REPAIR_COMMAND}` to move {', '.join(counts)} to quarantine")
    if folder is not None and folder.repairs:
        steps.append(
            f"moved {len(folder.repairs)} thing(s) to {folder.uri} ({REPAIR_NOTE_NAME} there says "
            "what and why); delete that folder once nobody needs the evidence"
        )
    if rebuild and rebuild != NOTHING_TO_REBUILD:
        steps.append(f"then {rebuild}" if counts else rebuild)
    return steps
