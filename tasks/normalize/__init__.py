"""Normalize stage (store stage `normalize`): core.py is loudness normalization (no Prefect, no
store); stage.py keys, plans and stores normalized audio."""
