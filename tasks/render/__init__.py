"""Render stage (store stage `render`): core.py renders MIDI through a soundfont (no Prefect, no
store); stage.py keys, plans and stores the renders."""
