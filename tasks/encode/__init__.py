"""Encode stage (store stage `encode`): stage.py keys, plans and stores the latents of normalized
items through a stored autoencoder; report.py (with templates/report.html.j2) is the report of a
latents version; spec.py declares the stage to tasks.pipeline.registry."""
