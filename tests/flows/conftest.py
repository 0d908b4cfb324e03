"""Every flow test runs on the session's Prefect test harness (`prefect_api`, tests/conftest.py)."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def _flows_use_the_harness(prefect_api):
    yield
