"""The benchmark script runs (in-process parts, quick mode) and prints its tables.

Functional only: no timing is asserted, the numbers belong to the benchmark's output.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_quick_in_process_run_prints_every_table() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--quick", "--no-wrk"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for expected in (
        "pass-through",
        "bare app ns",
        "with middleware ns",
        "added ns",
        "GET /health",
        "httpx.MockTransport upstream",
        "us/request (CPU)",
        "cache-hit-instant",
        "cache-hit-stream",
        "upstream clients on loopback",
        "aiohttp.ClientSession",
        "client only: default",
        "middleware + default client",
    ):
        assert expected in out, f"{expected!r} missing from:\n{out}"
    # Every in-process request was answered correctly (the failures column is all zeros).
    for line in out.splitlines():
        if line.startswith(
            ("instant ", "stream ", "cache-hit-", "aiohttp.", "client only", "middleware +")
        ):
            assert line.split()[-1] == "0", line
    assert "Traceback" not in done.stderr


def test_missing_wrk_is_a_clear_message(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}  # no wrk on this PATH
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--quick", "--no-inprocess"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 2
    assert "wrk is not installed" in done.stderr
    assert "apt-get install -y wrk" in done.stderr


def test_py_spy_stack_summary() -> None:
    saved = list(sys.path)
    name = "portkey_mw_bench_run"
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / "run.py")
    assert spec is not None
    assert spec.loader is not None
    run = importlib.util.module_from_spec(spec)
    sys.modules[name] = run  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(run)
    finally:
        sys.path[:] = saved
        del sys.modules[name]
    collapsed = (
        "handle (portkey_mw/pipeline.py:80);send (httpx/_client.py:1600) 3\n"
        "handle (portkey_mw/pipeline.py:80) 1\n"
        " 1\n"
    )
    summary = run.summarize_stacks(collapsed, top=5, cpu_us=100.0)
    assert "5 samples" in summary
    assert "60.0% ~   60 us/req  httpx" in summary
    assert "20.0% ~   20 us/req  portkey_mw" in summary
    assert "uvloop/kernel" in summary
    assert "80.0%  handle (portkey_mw/pipeline.py)" in summary
