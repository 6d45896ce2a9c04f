"""Tests on real data never turn into silent skips in CI."""

import pytest

from tests.helpers import shared_data


def test_missing_shared_data_skips_on_a_workstation_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-folder"):
        shared_data("no-such-folder")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-such-folder"):
        shared_data("no-such-folder")
