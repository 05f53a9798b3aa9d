"""The standalone gateway: TOML settings with ${ENV} values, start-up errors naming the key,
and ``portkey-mw serve`` answering /health and completions on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from portkey_mw import SettingsError, load_settings
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_example_toml_loads_with_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTKEY_MW_ACCESS_KEY", "gw-access")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("AZURE_OPENAI_KEY", "az-env")
    settings = load_settings(ROOT / "examples" / "gateway.toml")
    assert settings.api_keys == ["gw-access"]
    assert settings.virtual_keys["openai-prod"].api_key == "sk-env"
    assert settings.virtual_keys["azure-east"].options["deployment_id"] == "instruct"
    assert "resilient" in settings.configs
    from portkey_mw.gateway import create_gateway

    create_gateway(settings)  # registered configs validate at start-up


def test_missing_env_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = tmp_path / "g.toml"
    path.write_text('[virtual_keys.a]\nprovider = "openai"\napi_key = "${NOT_SET_ANYWHERE}"\n')
    with pytest.raises(SettingsError, match=r"virtual_keys\.a\.api_key.*NOT_SET_ANYWHERE"):
        load_settings(path)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("max_body_bytes = 'big'\n", "max_body_bytes"),
        ("nonsense = 1\n", "nonsense"),
        ("[virtual_keys.a]\nprovider = 3\n", "virtual_keys.a.provider"),
        ("= broken", "not valid TOML"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "g.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=needle.replace(".", r"\.")):
        load_settings(path)


def test_bad_config_in_file_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text('[configs.x]\nstrategy = { mode = "fallback" }\ntargets = []\n')
    result = subprocess.run(
        [sys.executable, "-m", "portkey_mw", "serve", "--config", str(path), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "targets" in result.stderr


def test_serve_answers_health_and_completions() -> None:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "portkey_mw",
            "serve",
            "--port",
            str(port),
            "--allow-custom-host",
            "127.0.0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(base + "/health").json() == {"status": "ok"}
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert httpx.get(base + "/other").status_code == 404
        response = httpx.post(base + "/v1/completions", json={"model": "m", "prompt": "p"})
        assert response.status_code == 400
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    completions = [e for e in events if e.get("event") == "completion"]
    assert completions, out.decode()
    assert completions[0]["status"] == 400
