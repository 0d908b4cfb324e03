"""Generate stage (store stage `generate`): params.py is the request; stage.py keys, plans and
stores samples of a stored model; spec.py declares the stage to tasks.pipeline.registry."""
