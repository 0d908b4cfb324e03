"""Normalize stage (store stage `normalize`, the stage of the datasets the dataset flows publish):
params.py is the loudness settings; core.py is loudness normalization (no Prefect, no store);
stage.py keys, plans and stores normalized audio; report.py (with templates/report.html.j2) is
the report of a dataset version; spec.py declares the stage to tasks.pipeline.registry."""
