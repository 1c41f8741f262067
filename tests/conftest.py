"""Pytest wiring only; the helpers themselves live in ``tests.support.testkit``."""

from __future__ import annotations

import pytest

from tests.support.testkit import shared_data_missing


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.realdata`` tests skip, with the reason, where ../shared/data is absent."""
    reason = shared_data_missing()
    if reason:
        for item in items:
            if "realdata" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))
