"""Soak: 64 concurrent requests, mixed stream and not, for N minutes, against the middleware
served by uvicorn in a subprocess, with a fast loopback fake provider in another.

    python benchmarks/soak.py                 # 10 minutes
    python benchmarks/soak.py --seconds 120   # a short run
    python benchmarks/soak.py --minutes 30 --json soak.json

Reports requests, errors (by kind), latency percentiles, and the gateway process's RSS and
open file descriptors every ~10 s, start -> end. Exit status 1 when any request failed or
the gateway logged a warning or an error. Everything listens on 127.0.0.1; the run is
bounded in time and stops both subprocesses on every exit path.

Not a test: CI does not run it. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPLETION = {
    "id": "cmpl-soak",
    "object": "text_completion",
    "created": 1700000000,
    "model": "soak-model",
    "choices": [{"text": " ok", "index": 0, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
}
STREAM_CHUNKS = 8
STARTUP_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0

# --- the fake provider (subprocess role "fake") -----------------------------------------------


async def fake_provider(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers any POST at once: an OpenAI completion, or an SSE stream when asked."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].removeprefix("lifespan.")
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if b'"stream":true' in body.replace(b" ", b""):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for index in range(STREAM_CHUNKS):
            finish = "stop" if index == STREAM_CHUNKS - 1 else None
            chunk = {
                **COMPLETION,
                "choices": [
                    {"text": f" t{index}", "index": 0, "logprobs": None, "finish_reason": finish}
                ],
            }
            chunk.pop("usage")
            frame = b"data: " + json.dumps(chunk).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        return
    data = json.dumps(COMPLETION).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def run_fake(port: int) -> None:
    import uvicorn

    uvicorn.run(fake_provider, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- the gateway (subprocess role "gateway") ---------------------------------------------------


def run_gateway(port: int, upstream: str) -> None:
    import logging

    import uvicorn

    from portkey_mw import PortkeyMiddleware
    from portkey_mw.logconfig import configure_logging

    # Warnings and errors only (one completion line per request would measure the terminal).
    configure_logging(json=True, level=logging.WARNING, stream=sys.stderr)

    async def health(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = PortkeyMiddleware(
        health,
        virtual_keys={
            "soak": {"provider": "openai", "api_key": "sk-soak", "custom_host": f"{upstream}/v1"}
        },
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- the driver -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on {port} in time") from None
            time.sleep(0.05)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@contextlib.contextmanager
def subprocess_role(role: str, *args: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--role", role, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_GRACE_S)


@dataclass
class Tally:
    requests: int = 0
    streams: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)


async def one_request(session: Any, url: str, stream: bool, tally: Tally) -> None:
    import aiohttp

    body = {"model": "soak-model", "prompt": "Say ok", "max_tokens": 8, "stream": stream}
    started = time.perf_counter()
    try:
        async with session.post(
            url, json=body, headers={"x-portkey-virtual-key": "soak"}
        ) as response:
            raw = await response.read()
            if response.status != 200:
                tally.errors[f"status {response.status}"] += 1
                return
            if stream:
                text = raw.decode()
                if not text.endswith("data: [DONE]\n\n") or text.count("data: [DONE]") != 1:
                    tally.errors["stream without one final [DONE]"] += 1
                elif '"error"' in text:
                    tally.errors["stream error event"] += 1
                elif text.count("data: ") != STREAM_CHUNKS + 1:
                    tally.errors["stream lost chunks"] += 1
            else:
                answer = json.loads(raw)
                if answer.get("choices", [{}])[0].get("text") != " ok":
                    tally.errors["unexpected answer"] += 1
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        tally.errors[type(exc).__name__] += 1
    finally:
        tally.requests += 1
        tally.streams += stream
        tally.latencies_ms.append((time.perf_counter() - started) * 1000)


async def drive(
    url: str, pid: int, seconds: float, concurrency: int, every: float, warmup: float
) -> dict[str, Any]:
    import aiohttp

    rng = random.Random(64)
    tally = Tally()
    samples: list[dict[str, float]] = []
    stop_at = time.monotonic() + warmup + seconds

    async def worker() -> None:
        while time.monotonic() < stop_at:
            await one_request(session, url, rng.random() < 0.5, tally)

    async def sampler() -> None:
        await asyncio.sleep(warmup)
        # The warm-up's requests are not counted: the run starts from a warm gateway.
        tally.requests, tally.streams = 0, 0
        tally.errors.clear()
        tally.latencies_ms.clear()
        started = time.monotonic()
        while True:
            elapsed = time.monotonic() - started
            sample = {
                "t_s": round(elapsed, 1),
                "rss_mb": round(rss_mb(pid), 1),
                "fds": open_fds(pid),
                "requests": tally.requests,
                "errors": sum(tally.errors.values()),
            }
            samples.append(sample)
            print(
                f"  t={sample['t_s']:>6.1f}s  rss={sample['rss_mb']:>7.1f} MB  "
                f"fds={sample['fds']:>4}  requests={sample['requests']:>8}  "
                f"errors={sample['errors']}",
                flush=True,
            )
            if time.monotonic() >= stop_at:
                return
            await asyncio.sleep(min(every, max(0.0, stop_at - time.monotonic())))

    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        watch = asyncio.create_task(sampler())
        await asyncio.wait_for(
            asyncio.gather(watch, *workers), timeout=warmup + seconds + REQUEST_TIMEOUT_S + 10
        )
    # one last sample once the load is gone (idle connections kept by the pool are counted)
    await asyncio.sleep(1)
    final_idle = {"rss_mb": round(rss_mb(pid), 1), "fds": open_fds(pid)}
    latencies = sorted(tally.latencies_ms) or [0.0]
    measured = samples[-1]["t_s"] if samples else seconds
    return {
        "seconds": measured,
        "concurrency": concurrency,
        "requests": tally.requests,
        "streams": tally.streams,
        "requests_per_s": round(tally.requests / measured, 1) if measured else 0.0,
        "errors": dict(tally.errors),
        "p50_ms": round(latencies[len(latencies) // 2], 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)], 2),
        "max_ms": round(latencies[-1], 2),
        "samples": samples,
        "idle_after": final_idle,
    }


def gateway_log_problems(log: Path) -> list[str]:
    problems = []
    for line in log.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        problems.append(line[:300])
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, help="overrides --minutes (short runs)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds, not counted")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--role", choices=["driver", "fake", "gateway"], default="driver")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", default="")
    args = parser.parse_args()

    if args.role == "fake":
        run_fake(args.port)
        return 0
    if args.role == "gateway":
        run_gateway(args.port, args.upstream)
        return 0
    if not os.path.isdir("/proc/self/fd"):
        print("soak.py needs Linux /proc", file=sys.stderr)
        return 2

    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    fake_port, gateway_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="portkey-mw-soak-") as workdir:
        fake_log, gateway_log = Path(workdir, "fake.log"), Path(workdir, "gateway.log")
        with (
            subprocess_role("fake", "--port", str(fake_port), log=fake_log) as fake,
            subprocess_role(
                "gateway",
                "--port",
                str(gateway_port),
                "--upstream",
                f"http://127.0.0.1:{fake_port}",
                log=gateway_log,
            ) as gateway,
        ):
            wait_for_port(fake_port, fake, "fake provider")
            wait_for_port(gateway_port, gateway, "gateway")
            print(
                f"soak: {seconds:.0f}s at {args.concurrency} concurrent requests "
                f"(half streams), gateway pid {gateway.pid}",
                flush=True,
            )
            report = asyncio.run(
                drive(
                    f"http://127.0.0.1:{gateway_port}/v1/completions",
                    gateway.pid,
                    seconds,
                    args.concurrency,
                    args.sample_every,
                    args.warmup,
                )
            )
            alive = gateway.poll() is None
        report["gateway_alive_at_end"] = alive
        report["gateway_log_problems"] = gateway_log_problems(gateway_log)
        problems_in_fake = [line for line in fake_log.read_text().splitlines() if line.strip()]
        report["fake_log_lines"] = problems_in_fake[:20]

    samples = report["samples"]
    first, last = samples[0], samples[-1]
    peak = max(s["rss_mb"] for s in samples)
    print(
        f"\nlength {report['seconds']:.0f}s  requests {report['requests']} "
        f"({report['streams']} streams, {report['requests_per_s']}/s)  "
        f"errors {sum(report['errors'].values())} {report['errors'] or ''}\n"
        f"latency p50 {report['p50_ms']} ms  p99 {report['p99_ms']} ms  max {report['max_ms']} ms\n"
        f"RSS {first['rss_mb']} MB -> {last['rss_mb']} MB (peak {peak} MB)  "
        f"fds {first['fds']} -> {last['fds']} (idle after: {report['idle_after']['fds']})\n"
        f"gateway log warnings/errors: {len(report['gateway_log_problems'])}"
    )
    for line in report["gateway_log_problems"][:5]:
        print(f"  {line}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = bool(report["errors"]) or bool(report["gateway_log_problems"]) or not alive
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
