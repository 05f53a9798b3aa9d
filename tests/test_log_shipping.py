"""Log shipping: the example host writes JSON lines to stdout and a rotating file; every line
read back is JSON and every completion event matches the documented schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgspec

from portkey_mw.events import CompletionEvent
from tests.fakes import ScriptedProvider
from tests.helpers import free_port, serve

ROOT = Path(__file__).resolve().parents[1]


def test_example_host_ships_schema_valid_json_lines(tmp_path: Path) -> None:
    log_file = tmp_path / "events.log"
    port = free_port()
    fake = ScriptedProvider({"status": 200}, {"status": 429}, {"stream": 3})
    with serve(fake) as provider_url:
        process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "examples" / "log_shipping" / "host_app.py"),
                "--log-file",
                str(log_file),
                "--port",
                str(port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                try:
                    httpx.get(base + "/hello")
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            headers = {
                "x-portkey-provider": "openai",
                "authorization": "Bearer sk-shipping-secret",
                "x-portkey-custom-host": provider_url + "/v1",
            }
            body = {"model": "m", "prompt": "p"}
            assert (
                httpx.post(base + "/v1/completions", json=body, headers=headers).status_code == 200
            )
            assert (
                httpx.post(base + "/v1/completions", json=body, headers=headers).status_code == 429
            )
            streamed = httpx.post(
                base + "/v1/completions", json={**body, "stream": True}, headers=headers
            )
            assert streamed.text.endswith("data: [DONE]\n\n")
            assert (
                httpx.post(base + "/v1/completions", json={"model": 1}, headers=headers).status_code
                == 400
            )
        finally:
            process.terminate()
            stdout, _ = process.communicate(timeout=20)
    file_lines = log_file.read_text().splitlines()
    stdout_lines = [line for line in stdout.decode().splitlines() if line.strip()]
    for lines in (file_lines, stdout_lines):
        records = [json.loads(line) for line in lines]  # every line is one JSON object
        completions = [r for r in records if r.get("event") == "completion"]
        assert [r["status"] for r in completions] == [200, 429, 200, 400]
        for record in completions:
            fields = {k: v for k, v in record.items() if k not in ("timestamp", "level")}
            msgspec.convert(fields, CompletionEvent, strict=True)
        hello = [r for r in records if r.get("event") == "hello_called"]
        assert hello == [] or "trace_id" not in hello[0]
    assert "sk-shipping-secret" not in log_file.read_text()
    assert any(
        json.loads(line).get("event", "").startswith("Uvicorn running") for line in file_lines
    )
