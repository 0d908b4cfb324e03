"""Crawl stages (store stage `download`, failure stage `list`): params.py is the crawl settings;
core.py lists sources and downloads audio with yt-dlp (no Prefect, no store); stage.py keys, plans
and stores downloads; spec.py declares both stages to tasks.pipeline.registry. Listing stores
nothing and feeds only the download, so both live here."""
