"""Machinery every stage shares: batching.py (work items, stable batches, failure bounds),
caching.py (Prefect cache keys from store keys), publishing.py (dataset versions, artifacts,
events), audio_io.py (a store object's audio file, level stats), sources.py (user-given sources
-> files with item names and digests), models.py (model references -> stored networks)."""
