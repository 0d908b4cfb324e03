"""One Prefect test harness (a temporary local API on SQLite) for every flow test."""

import pytest
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session", autouse=True)
def prefect_api():
    with prefect_test_harness(server_startup_timeout=90):
        yield
