"""Render stage (store stage `render`): params.py is the render settings; core.py renders MIDI
through a soundfont (no Prefect, no store); stage.py keys, plans and stores the renders; spec.py
declares the stage to tasks.pipeline.registry."""
