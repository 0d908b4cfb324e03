"""Crawl stages (store stage `download`, failure stage `list`): core.py lists sources and
downloads audio with yt-dlp (no Prefect, no store); stage.py keys, plans and stores downloads.
Listing stores nothing and feeds only the download, so both live here."""
