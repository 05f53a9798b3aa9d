"""Each example host (FastAPI, Starlette mounted under a prefix, Django ASGI) serves its own
routes and the gateway, under uvicorn, against the loopback fake provider."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import serve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import fake_provider  # noqa: E402


@pytest.fixture(scope="module")
def provider_url() -> Iterator[str]:
    with serve(fake_provider.create_app()) as url:
        yield url


@pytest.mark.parametrize(
    ("module", "attribute", "own_route", "gateway_path", "lifespan"),
    [
        ("examples.fastapi_app", "app", "/hello", "/v1/completions", "auto"),
        ("examples.starlette_app", "app", "/", "/llm/v1/completions", "auto"),
        ("examples.django_asgi", "application", "/ping", "/v1/completions", "auto"),
    ],
)
def test_example_hosts(
    monkeypatch: pytest.MonkeyPatch,
    provider_url: str,
    module: str,
    attribute: str,
    own_route: str,
    gateway_path: str,
    lifespan: str,
) -> None:
    monkeypatch.setenv("PORTKEY_MW_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.syspath_prepend(str(ROOT))
    sys.modules.pop(module, None)
    app = getattr(importlib.import_module(module), attribute)
    with serve(app, lifespan=lifespan) as url:
        assert httpx.get(url + own_route).status_code == 200
        response = httpx.post(
            url + gateway_path,
            json={"model": "m", "prompt": "hi"},
            headers={
                "x-portkey-provider": "openai",
                "authorization": "Bearer sk-x",
                "x-portkey-custom-host": provider_url + "/v1",
            },
        )
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["text"] == " Hello from the fake provider."


def test_demo_runs() -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events].count("completion") == 2
    assert "streamed: ' word0 word1 word2'" in result.stdout


def test_readme_lists_every_provider() -> None:
    from portkey_mw import PROVIDERS

    readme = (ROOT / "README.md").read_text()
    missing = [name for name in PROVIDERS if f"| `{name}` |" not in readme]
    assert missing == []
