"""Segment stages (store stages `segment-plan` and `segment`): params.py is the segment
settings; core.py plans cuts and streams segment audio (no Prefect, no store); stage.py keys,
plans and stores plans and segments; spec.py declares both stages to tasks.pipeline.registry."""
