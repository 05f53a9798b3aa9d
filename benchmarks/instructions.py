"""Instructions per request, counted by callgrind: the deterministic way to compare two
versions on a noisy machine (the count repeats to ~1% where timings vary by 30%).

``python benchmarks/instructions.py [--systems middleware,middleware-nolog,bare] [--requests N]``

Each system (the names of ``run.py``) runs under ``valgrind --tool=callgrind`` on 127.0.0.1,
the fake provider beside it. After a warm-up the counters are zeroed
(``callgrind_control -z``), ``--requests`` instant completions are sent, 16 at a time, by an
aiohttp client in this process, and the counters are dumped (``callgrind_control -d``).
Printed: instructions per request of the whole server process (server, middleware, upstream
client, log event) and the ratio to the first system. Needs Debian's ``valgrind``
(``apt-get install -y valgrind``); about a minute per system.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
from run import BODIES, Processes, System, free_port, python_system_argv, wait_ready

HERE = Path(__file__).resolve().parent
_TOTALS = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


async def send_requests(system: System, fake_port: int, count: int, in_flight: int) -> None:
    """``count`` instant completions, ``in_flight`` at a time; any answer but 200 stops."""
    path, headers = system.target("instant", fake_port)
    url = f"http://127.0.0.1:{system.port}{path}"
    body = BODIES["instant"].encode()
    left = [count]
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{system.name}: HTTP {response.status}")

        await asyncio.gather(*(worker() for _ in range(in_flight)))


def callgrind(command: str, pid: int) -> None:
    subprocess.run(
        ["callgrind_control", command, str(pid)], check=True, capture_output=True, timeout=120
    )


def count(name: str, args: argparse.Namespace, procs: Processes, fake_port: int) -> float:
    """Instructions per request of one system."""
    port = free_port()
    out = procs.workdir / f"{name}.callgrind"
    argv = python_system_argv(name, port, fake_port)
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    process = procs.spawn(name, [*valgrind, *argv])
    wait_ready(process, port, "/health", timeout=180)  # ~50x slower under valgrind
    system = System(name, process, port, "")
    asyncio.run(send_requests(system, fake_port, args.warmup, 16))
    callgrind("-z", process.pid)
    asyncio.run(send_requests(system, fake_port, args.requests, 16))
    callgrind("-d", process.pid)
    process.stop()
    dumps = sorted(procs.workdir.glob(f"{name}.callgrind*"))
    # The dump after zeroing holds exactly the measured requests: the first part file.
    parts = [d for d in dumps if d.name != out.name] or dumps
    match = _TOTALS.search(parts[0].read_text(errors="replace"))
    if match is None:
        raise RuntimeError(f"no totals in {parts[0].name}")
    return int(match.group(1)) / args.requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="middleware,middleware-nolog,bare,bare-asgi")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed: apt-get install -y valgrind", file=sys.stderr)
        return 2
    names = [n for n in args.systems.split(",") if n]
    with tempfile.TemporaryDirectory(prefix="portkey_mw-instr-") as tmp:
        procs = Processes(Path(tmp))
        try:
            fake_port = free_port()
            fake = procs.spawn(
                "fake", [sys.executable, str(HERE / "fake_upstream.py"), "--port", str(fake_port)]
            )
            wait_ready(fake, fake_port, "/health")
            first: float | None = None
            print(f"{'system':<18} {'instructions/request':>22} {'x first':>8}")
            for name in names:
                per_request = count(name, args, procs, fake_port)
                first = first or per_request
                print(f"{name:<18} {per_request:>22,.0f} {per_request / first:>8.2f}", flush=True)
        finally:
            procs.stop_all()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")  # the systems inherit it: steadier counts
    sys.exit(main())
