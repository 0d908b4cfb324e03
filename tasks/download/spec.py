"""The crawl stages, as tasks.pipeline.registry knows them: `list` records failures only (a
source that cannot be listed), `download` stores the audio."""

from __future__ import annotations

from tasks.download.core import InvalidSource
from tasks.download.params import CrawlParams, InvalidCrawlParams
from tasks.download.stage import DOWNLOAD_STAGE, DOWNLOAD_STAGE_VERSION, LIST_STAGE
from tasks.pipeline.registry import StageSpec

SPECS = (
    StageSpec(LIST_STAGE, None, user_errors=(InvalidSource,)),
    StageSpec(
        DOWNLOAD_STAGE,
        DOWNLOAD_STAGE_VERSION,
        params=CrawlParams,
        user_errors=(InvalidCrawlParams,),
    ),
)
