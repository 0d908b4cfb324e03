"""Session-wide test environment: quiet, offline, and isolated from the user's Prefect and store."""

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="musika-piano-tests-"))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_HOME"] = str(_SESSION_DIR / "prefect-home")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "musika-piano-numba"))
os.environ["MUSIKA_PIANO_DATA"] = str(_SESSION_DIR / "store")
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("MUSIKA_PIANO_PUBLIC_URL", None)


@pytest.fixture(scope="session")
def prefect_api():
    """One Prefect test harness (a temporary local API on SQLite) for the session: the flow tests
    use it automatically (tests/flows/conftest.py), other tests that run a flow ask for it."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
