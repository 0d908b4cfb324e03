"""Segment stages (store stages `segment-plan` and `segment`): core.py plans cuts and streams
segment audio (no Prefect, no store); stage.py keys, plans and stores plans and segments."""
