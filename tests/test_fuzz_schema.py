"""schemathesis against the served middleware (uvicorn on loopback), from the OpenAPI copy in
``openapi/completions-openapi.yaml``; the upstream is a loopback OpenAI stand-in.

Three generators over ``POST /v1/completions``:

* schema-valid bodies with the headers schemathesis makes up for the security schemes
  (provider, keys, config, custom host: mostly refused, which is the point);
* schema-valid bodies with working routing headers, so they reach the provider and back
  (answers checked against ``CreateCompletionResponse``; streams end with ``[DONE]``);
* schema-violating bodies and headers (schemathesis' negative mode).

Property for all: the status is < 500, every 4xx is the OpenAI error shape, the trace id is
returned, no ``internal_error`` is logged, and a valid request still works afterwards.
Quick mode in CI; ``PORTKEY_MW_FUZZ_EXAMPLES=5000`` for the nightly run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import response_schema_conformance
from structlog.testing import capture_logs

from portkey_mw import PortkeyMiddleware
from tests.faults_fakes import Logs, OpenAIFake, assert_error_shape, fuzz_settings
from tests.helpers import not_found_app, serve, sse_events

SPEC = Path(__file__).resolve().parent.parent / "openapi" / "completions-openapi.yaml"
SCHEMA = schemathesis.openapi.from_path(SPEC)
OPERATION = SCHEMA["/completions"]["POST"]
ROUTED = {"x-portkey-virtual-key": "fake", "content-type": "application/json"}
VALID = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test", "max_tokens": 7}


class Served:
    """The gateway under test and what it was asked."""

    def __init__(self, base_url: str, fake: OpenAIFake) -> None:
        self.base_url = base_url
        self.fake = fake
        self.session = requests.Session()
        self.statuses: dict[int, int] = {}

    def call(self, case: Any) -> Response:
        response: Response = case.call(
            base_url=f"{self.base_url}/v1", session=self.session, timeout=10
        )
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        return response

    def healthy(self) -> None:
        """A valid request after the fuzzing still gets a completion."""
        response = self.session.post(
            f"{self.base_url}/v1/completions", json=VALID, headers=ROUTED, timeout=10
        )
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["text"] == " ok"


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    fake = OpenAIFake()
    with serve(fake) as fake_url:
        app = PortkeyMiddleware(
            not_found_app,
            virtual_keys={
                "fake": {"provider": "openai", "api_key": "sk-fuzz", "custom_host": fake_url}
            },
            allowed_custom_hosts=[fake_url.removeprefix("http://")],
            read_timeout=10.0,
        )
        with serve(app) as base_url:
            served = Served(base_url, fake)
            yield served
    print(f"\nschemathesis: {sum(served.statuses.values())} requests, statuses {served.statuses}")


def header(response: Response | requests.Response, name: str) -> str:
    value = response.headers.get(name)
    if isinstance(value, list):
        return value[0] if value else ""
    return value or ""


def check(response: Response | requests.Response, context: str) -> None:
    status = response.status_code
    assert status < 500, f"{status} for client input: {response.text[:500]}\n{context}"
    assert header(response, "x-portkey-trace-id"), context
    if status >= 400:
        assert_error_shape(status, response.json(), context)


def no_internal_errors(logs: Logs) -> None:
    internal = [e for e in logs if e.get("event") == "internal_error"]
    assert not internal, internal[:1]
    for event in logs:
        if event.get("event") == "completion":
            assert event["status"] < 500 or event.get("error_type") != "internal_error", event


def describe(case: Any) -> str:
    return case.as_curl_command()  # type: ignore[no-any-return]


def test_schema_valid_bodies_with_generated_headers(served: Served) -> None:
    with capture_logs() as logs:

        @given(case=OPERATION.as_strategy(generation_mode=GenerationMode.POSITIVE))
        @fuzz_settings()
        def run(case: Any) -> None:
            check(served.call(case), describe(case))

        run()
    no_internal_errors(logs)
    served.healthy()


def test_schema_valid_bodies_reach_the_provider_and_conform(served: Served) -> None:
    before = served.fake.requests
    answered = {"json": 0, "stream": 0}
    with capture_logs() as logs:

        @given(
            case=OPERATION.as_strategy(generation_mode=GenerationMode.POSITIVE),
            stream=st.booleans(),
        )
        @fuzz_settings()
        def run(case: Any, stream: bool) -> None:
            case.headers = dict(ROUTED)
            if stream and isinstance(case.body, dict):
                case.body["stream"] = True  # half the cases stream (the schema rarely asks)
            response = served.call(case)
            check(response, describe(case))
            if response.status_code != 200:
                return
            if header(response, "content-type").startswith("text/event-stream"):
                events = sse_events(response.text)
                assert events[-1] == "[DONE]", response.text
                assert all(isinstance(e, dict) and "error" not in e for e in events[:-1])
                answered["stream"] += 1
            else:
                case.validate_response(response, checks=[response_schema_conformance])
                answered["json"] += 1

        run()
    no_internal_errors(logs)
    # Most valid bodies are answered: the only refusals left are provider-specific ranges.
    assert served.fake.requests - before >= sum(answered.values()) > 0
    print(f"\nrouted: {answered}")
    assert answered["json"] > 0
    assert answered["stream"] > 0
    served.healthy()


def test_schema_violating_requests_are_refused_cleanly(served: Served) -> None:
    with capture_logs() as logs:

        @given(case=OPERATION.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        @fuzz_settings()
        def run(case: Any) -> None:
            response = served.call(case)
            check(response, describe(case))

        run()
    no_internal_errors(logs)
    served.healthy()


def test_raw_bodies_never_5xx(served: Served) -> None:
    """Bodies that are not the schema at all: truncated, non-UTF-8, wrong JSON types."""
    valid = json.dumps(VALID).encode()
    bodies = [
        b"",
        b"{",
        b"null",
        b"[]",
        b'"text"',
        b"\xff\xfe\x00",
        valid[:-1],
        valid + b"garbage",
        b'{"model": "m", "prompt": "p", "n": 1e999}',
        b'{"model": "m", "prompt": "p", "max_tokens": -1}',
        b'{"model": "m", "prompt": [], "stream": true}',
        b'{"model": "m", "prompt": "p", "stream": "yes"}',
        b'{"model": "m", "prompt": "p", "model": "twice"}',
        b'{"model": "m", "prompt": "\\ud800"}',
    ]
    for body in bodies:
        response = served.session.post(
            f"{served.base_url}/v1/completions", data=body, headers=ROUTED, timeout=10
        )
        check(response, repr(body))
    served.healthy()
