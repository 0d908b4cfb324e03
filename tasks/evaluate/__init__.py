"""Evaluate stages (store stages `evaluate-reference`, `evaluate-model`): metrics.py holds the
per-clip and per-set measures (no Prefect, no store), stage.py plans, measures and stores
subjects."""
