"""Machinery every stage shares: batching.py (work items, stable batches, failure bounds),
environment.py (faults of the machine that stop a stage: no space, read-only, permission, I/O),
preflight.py (the space check before a build),
caching.py (Prefect cache keys from store keys), publishing.py (dataset versions, artifacts,
events, the version's report), artifact_keys.py (Prefect artifact keys), registry.py (the stages
as their spec.py modules declare them: names, versions, params, reports, input errors),
audio_io.py (a store object's audio file, level stats), sources.py (user-given sources -> files
with item names and digests), models.py (model references -> stored networks), params.py (the
run settings every flow takes)."""
