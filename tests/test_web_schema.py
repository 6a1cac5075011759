"""Schemathesis: requests generated from ``/openapi.json`` get no 5xx, and every answer fits the schema.

A few examples per operation keep it to seconds; the tiny model answers any request that gets through. (The
operations are walked by hand: schemathesis' lazy pytest fixture does not run under this pytest.) One check is
left out: "schema-valid data is accepted". A schema cannot say "bytes that decode as an image", so random
bytes in ``image1`` are schema-valid and rightly refused with 400.
"""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402
from webtools import TINY  # noqa: E402

from simexplain.web import WebSettings, create_app  # noqa: E402

EXAMPLES = 6


def test_api_answers_match_the_schema_and_never_fail():
    app = create_app(WebSettings(models=(TINY,), upload_limit=200_000, queue_size=4))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/api/explain", "/api/jobs", "/api/health", "/api/methods"}
    calls = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
            calls.append((operation.path, response.status_code))

        check()
    assert all(status < 500 for _, status in calls)
    assert len(calls) >= len(operations)
