"""The crawl stages' parameters: one model for the flow's form, the CLI and the download key
(which takes only the output format: `tasks.download.stage.download_params`). Pydantic and the
standard library only, so the CLI builds it without loading yt-dlp."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class InvalidCrawlParams(ValueError):
    """A crawl option with an impossible value: min above max (pydantic reports it inside a
    ValidationError), or, found at run time, a missing cookies file or ffmpeg."""


class CrawlParams(BaseModel):
    """Which videos a YouTube refresh takes and how politely it fetches them.

    Duration bounds apply before the download when the site reports a duration, and always to
    the downloaded file. Retry k waits `min(retry_backoff_s * 2**k, retry_backoff_max_s)`, or
    the server's Retry-After when that is longer (still capped). A source that never answers
    costs at most `(retries + 1) * socket_timeout_s` plus the backoff waits.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_items: int | None = Field(default=None, ge=1, description="At most this many videos per source (None: all).")
    min_duration_s: float | None = Field(
        default=30.0, ge=0.0, description="Shorter videos are skipped (None: no minimum)."
    )
    max_duration_s: float | None = Field(
        default=4 * 3600.0, ge=0.0, description="Longer videos are skipped (None: no maximum)."
    )
    sleep_between_downloads_s: float = Field(
        default=3.0, ge=0.0, description="Pause between two downloads (sites block clients that fetch too fast)."
    )
    retries: int = Field(
        default=3, ge=0, le=20, description="Retries, with backoff, after HTTP 403/429/5xx, timeouts or dropped "
        "connections."
    )
    retry_backoff_s: float = Field(default=5.0, ge=0.0, description="First retry's wait; doubles each time.")
    retry_backoff_max_s: float = Field(default=120.0, ge=0.0, description="Longest wait before a retry.")
    socket_timeout_s: float = Field(
        default=30.0, gt=0.0, description="How long a connection may stay silent before the attempt counts as a "
        "timeout (listing and download; each retry waits as long again)."
    )
    max_download_mb: float | None = Field(
        default=4096.0, gt=0.0, description="Largest download in MiB: a larger announced size is refused before "
        "any byte is fetched, a stream that grows past it is stopped (reason too_large; None: no cap)."
    )
    cookies_file: str | None = Field(default=None, description="Netscape cookies.txt for sites that need a login.")
    proxy: str | None = Field(default=None, description="e.g. socks5://127.0.0.1:1080; None uses the environment.")
    audio_format: str = Field(default="bestaudio/best", description="yt-dlp format selector of the stream fetched.")

    @model_validator(mode="after")
    def _duration_bounds_can_hold(self) -> CrawlParams:
        if (self.min_duration_s is not None and self.max_duration_s is not None
                and self.min_duration_s > self.max_duration_s):
            raise InvalidCrawlParams(
                f"min_duration_s ({self.min_duration_s}) is above max_duration_s ({self.max_duration_s})"
            )
        return self

    def backoff_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        wait = self.retry_backoff_s * 2.0**attempt
        if retry_after_s is not None:
            wait = max(wait, retry_after_s)
        return min(wait, self.retry_backoff_max_s)
