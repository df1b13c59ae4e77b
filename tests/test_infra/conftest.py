"""The parsed infra/terraform files, for every test module here (tests_support/terraform.py reads them)."""

from __future__ import annotations

import pytest
from tests_support.terraform import Parsed, parse


@pytest.fixture(scope="module")
def parsed() -> Parsed:
    return parse()
