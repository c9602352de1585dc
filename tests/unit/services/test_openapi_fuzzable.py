"""Every HTTP API's OpenAPI document loads in schemathesis whole, and each operation yields requests to send.

The fuzz (``tests/integration/test_http_fuzz.py``) draws its requests from these documents: an operation
schemathesis could not load would go untested without a word. In-process, no Kafka; 20 requests drawn
from them, to show they can be.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode

from tests.unit.services.test_openapi_documents import APPS, served_document


@pytest.mark.parametrize("api", sorted(APPS))
def test_schemathesis_loads_every_operation_and_draws_a_request_for_each(api: str) -> None:
    status, doc = served_document(APPS[api]())
    assert status == 200
    schema = schemathesis.openapi.from_dict(doc)
    results = list(schema.get_all_operations())
    errors = [result for result in results if not hasattr(result, "ok")]
    assert not errors, errors
    operations = [result.ok() for result in results]  # type: ignore[union-attr]
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert {(op.method.lower(), op.path) for op in operations} == documented
    drawn = []
    strategy = st.one_of([op.as_strategy(generation_mode=GenerationMode.POSITIVE) for op in operations])

    @settings(max_examples=20, derandomize=True, database=None, deadline=None, phases=[Phase.generate])
    @given(strategy)
    def draw(case: Case) -> None:
        drawn.append(case.operation.label)

    draw()
    assert drawn
