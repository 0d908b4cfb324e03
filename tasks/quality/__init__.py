"""Quality stages (store stage `quality`, failure stage `dedupe`): core.py measures segments and
finds duplicates (no Prefect, no store); stage.py keys and stores the measurements."""
