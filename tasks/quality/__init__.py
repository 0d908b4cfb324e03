"""Quality stages (store stage `quality`, failure stage `dedupe`): params.py is the quality
settings; core.py measures segments and finds duplicates (no Prefect, no store); stage.py keys
and stores the measurements; spec.py declares both stages to tasks.pipeline.registry."""
