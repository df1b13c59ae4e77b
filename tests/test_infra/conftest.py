"""The parsed infra/terraform files, for every test module here (terraform_config.py reads them)."""

from __future__ import annotations

import pytest

from test_infra.terraform_config import Parsed, parse


@pytest.fixture(scope="module")
def parsed() -> Parsed:
    return parse()
