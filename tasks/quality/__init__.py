"""Quality stages (store stages `quality` and `dedupe`): params.py is the quality settings; core.py
measures segments and finds repeated audio (no Prefect, no store); stage.py keys and stores the
measurements and the kept stretches of partly repeated segments; spec.py declares both stages to
tasks.pipeline.registry."""
