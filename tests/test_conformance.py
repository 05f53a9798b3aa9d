"""The shared conformance corpus (recorded from the Portkey gateway, with corrected
expectations where it is wrong) replayed against ``portkey-mw serve``. Skipped when the
corpus is not beside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "conformance"


@pytest.mark.skipif(not (CORPUS / "replay.py").exists(), reason="conformance corpus not present")
def test_conformance_corpus_replays_with_corrected_expectations() -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "portkey_mw",
            "serve",
            "--port",
            str(port),
            "--allow-custom-host",
            "127.0.0.1",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health")
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        result = subprocess.run(
            [
                sys.executable,
                str(CORPUS / "replay.py"),
                "--target",
                f"http://127.0.0.1:{port}",
                "--spawn-fake",
                "--expect",
                "corrected",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        server.terminate()
        server.wait(timeout=20)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert summary.endswith(" 0 failed"), summary
