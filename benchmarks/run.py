"""portkey_mw benchmark: one command, every system side by side in one run.

    python benchmarks/run.py                  # ~4 minutes: in-process numbers + wrk load
    python benchmarks/run.py --quick          # a few seconds per measurement (smoke)
    python benchmarks/run.py --quick --no-wrk # in-process numbers only (no wrk needed)
    python benchmarks/run.py --node           # also the Node Portkey gateway 1.15.2 (npm)

Starts on 127.0.0.1: a fast fake provider (``fake_upstream.py``), a bare aiohttp forwarding
proxy (``bare_proxy.py``, the limit) and the Starlette host with ``PortkeyMiddleware`` under
uvicorn (``host_app.py``). The systems under test share one core; wrk and the fake run on
the other(s). For each scenario (instant JSON, SSE of 50 chunks, 50 ms model latency) each
system is loaded in turn by ``wrk -c 64``; the table gives req/s, p50/p99 latency, CPU µs per
request (from /proc/<pid>/stat of the system under test), RSS after the load, and the ratios
to the bare proxy. Every process is ours, on loopback, and stopped on exit (Ctrl-C included).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SCENARIOS = ("instant", "stream", "delay")
DEFAULT_SYSTEMS = ("bare", "bare-asgi", "middleware", "middleware-nolog")
EXTRA_SYSTEMS = (
    "middleware-aiohttp",
    "middleware-frozen",
    "middleware-lean",
    "middleware-httpx",
    "node",
)
NODE_GATEWAY = "@portkey-ai/gateway@1.15.2"
NODE_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "portkey_mw-bench"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

BODIES = {
    "instant": '{"model":"gpt-3.5-turbo-instruct","prompt":"Say hello","max_tokens":16}',
    "stream": (
        '{"model":"gpt-3.5-turbo-instruct","prompt":"Say hello","max_tokens":16,"stream":true}'
    ),
    "delay": '{"model":"gpt-3.5-turbo-instruct","prompt":"Say hello","max_tokens":16}',
}
DESCRIPTIONS = {
    "direct": "no proxy: wrk straight at the fake provider (the measured ceiling, 50 ms only)",
    "bare": "aiohttp server + aiohttp client, forwards bytes (the limit)",
    "bare-asgi": "the same forwarding as a raw ASGI app under uvicorn (the limit inside uvicorn)",
    "middleware": "Starlette + PortkeyMiddleware, uvicorn; completion events as JSON to /dev/null",
    "middleware-nolog": "same, structlog drops events below WARNING",
    "middleware-aiohttp": "middleware with upstream_client='aiohttp' (aiohttp's pool, no httpx)",
    "middleware-frozen": "middleware, the host calls gc.freeze() after start-up (README)",
    "middleware-lean": "middleware + httpx over a lean aiohttp transport (benchmarks/clients.py)",
    "middleware-httpx": "middleware + plain httpx.AsyncClient (httpx's own pool)",
    "node": f"Portkey gateway {NODE_GATEWAY.rsplit('@', 1)[1]} (Node {{node}})",
}


# --- small utilities -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_ticks(pid: int) -> int:
    """utime + stime of a whole process (all threads), in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pin(pid: int, cpus: set[int] | None) -> None:
    """Pin every thread of ``pid`` (threads created later inherit it)."""
    if not cpus:
        return
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.sched_setaffinity(int(tid), cpus)


def http_request(
    port: int, method: str, path: str, headers: dict[str, str], body: str | None, timeout: float
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# --- processes -----------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # our own group: stopped by us, not by the terminal
            )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)  # the group we created for it, nothing else
            try:
                self.popen.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


class Processes:
    """Everything we started; stopped in reverse order on exit, whatever happens."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.items: list[Process] = []

    def spawn(self, name: str, argv: list[str], **kwargs: Any) -> Process:
        process = Process(name, argv, self.workdir / f"{name}.log", **kwargs)
        self.items.append(process)
        process.start()
        return process

    def stop_all(self) -> None:
        for process in reversed(self.items):
            process.stop()


def wait_ready(process: Process, port: int, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited during start-up:\n{process.tail()}")
        try:
            http_request(port, "GET", path, {}, None, timeout=1.0)
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{process.name} did not answer on port {port} in {timeout:.0f} s")


# --- systems -------------------------------------------------------------------------------


@dataclass
class System:
    name: str
    process: Process
    port: int
    description: str

    def measures(self, scenario: str) -> bool:
        """``direct`` (no proxy) is only the 50 ms scenario's ceiling."""
        return self.name != "direct" or scenario == "delay"

    def target(self, scenario: str, fake_port: int) -> tuple[str, dict[str, str]]:
        """Path and headers of one request of ``scenario`` to this system."""
        headers = {
            "content-type": "application/json",
            "authorization": "Bearer sk-bench",
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": f"http://127.0.0.1:{fake_port}/{scenario}/v1",
        }
        if self.name.startswith("bare") or self.name == "direct":
            return f"/{scenario}/v1/completions", {
                k: v for k, v in headers.items() if not k.startswith("x-portkey")
            }
        return "/v1/completions", headers


def node_gateway(workdir: Path, install_dir: Path) -> list[str] | None:
    """The command line of the Node gateway, installing it with npm once; None if impossible."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        print("  node: skipped (node/npm not found)")
        return None
    script = install_dir / "node_modules/@portkey-ai/gateway/build/start-server.js"
    if not script.exists():
        print(f"  node: installing {NODE_GATEWAY} into {install_dir} (npm, once) ...", flush=True)
        install_dir.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(
                [
                    npm,
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--silent",
                    "--prefix",
                    str(install_dir),
                    NODE_GATEWAY,
                ],
                check=True,
                timeout=300,
                stdout=subprocess.DEVNULL,
                stderr=(workdir / "npm.log").open("wb"),
            )
        except (subprocess.SubprocessError, OSError) as exc:
            print(f"  node: skipped (npm install failed: {exc}; see {workdir / 'npm.log'})")
            return None
    return [node, "--import", (HERE / "node_loopback.mjs").as_uri(), str(script)]


def python_system_argv(name: str, port: int, fake_port: int) -> list[str]:
    """The command line of one of the Python systems, serving on ``port``."""
    python = sys.executable
    upstream = f"http://127.0.0.1:{fake_port}"
    if name in ("bare", "bare-asgi"):
        server = ["--server", "uvicorn"] if name == "bare-asgi" else []
        return [
            python,
            str(HERE / "bare_proxy.py"),
            "--port",
            str(port),
            "--upstream",
            upstream,
            *server,
        ]
    if name.startswith("middleware"):
        variant = name.removeprefix("middleware").lstrip("-")
        log = "drop" if variant == "nolog" else "json"
        client = variant if variant in ("lean", "httpx", "aiohttp") else "default"
        return [
            python,
            str(HERE / "host_app.py"),
            "--port",
            str(port),
            "--upstream-host",
            f"127.0.0.1:{fake_port}",
            "--log",
            log,
            "--client",
            client,
            *(["--gc-freeze"] if variant == "frozen" else []),
        ]
    raise SystemExit(f"unknown system {name!r}")


def start_systems(
    names: list[str],
    procs: Processes,
    fake_port: int,
    sut_cpus: set[int] | None,
    node_dir: Path,
) -> list[System]:
    systems: list[System] = []
    for name in names:
        port = free_port()
        ready_path = "/health"
        env = None
        if name == "node":
            command = node_gateway(procs.workdir, node_dir)
            if command is None:
                continue
            argv = [*command, f"--port={port}", "--headless"]
            env = {**os.environ, "NODE_ENV": "production"}
            ready_path = "/"
        else:
            argv = python_system_argv(name, port, fake_port)
        process = procs.spawn(name, argv, env=env)
        try:
            wait_ready(process, port, ready_path)
        except RuntimeError as exc:
            print(f"  {name}: skipped ({exc})")
            process.stop()
            continue
        pin(process.pid, sut_cpus)
        description = DESCRIPTIONS[name]
        if name == "node":
            version = subprocess.run(
                ["node", "--version"], capture_output=True, text=True, check=False
            ).stdout
            description = description.format(node=version.strip())
        systems.append(System(name, process, port, description))
    return systems


def preflight(system: System, scenario: str, fake_port: int) -> str | None:
    """One request by hand: None if the answer is right, else what is wrong."""
    path, headers = system.target(scenario, fake_port)
    try:
        status, body = http_request(
            system.port, "POST", path, headers, BODIES[scenario], timeout=10.0
        )
    except OSError as exc:
        return f"request failed: {exc}"
    if status != 200:
        return f"HTTP {status}: {body[:120].decode(errors='replace')}"
    if scenario == "stream":
        if body.count(b"data:") < 52 or not body.rstrip().endswith(b"data: [DONE]"):
            return f"incomplete stream ({body.count(b'data:')} events)"
    elif b'"choices"' not in body:
        return f"not a completion: {body[:120]!r}"
    return None


def preflight_all(
    systems: list[System], scenarios: list[str], fake_port: int
) -> dict[tuple[str, str], str]:
    """One checked request per (scenario, system); the failures, which are not measured."""
    broken: dict[tuple[str, str], str] = {}
    for scenario in scenarios:
        for system in systems:
            if not system.measures(scenario):
                continue
            problem = preflight(system, scenario, fake_port)
            if problem is not None:
                broken[(scenario, system.name)] = f"preflight failed: {problem}"
    return broken


def ttft_ms(system: System, fake_port: int, count: int) -> list[float]:
    """Unloaded time to first body byte of the stream scenario, one request at a time."""
    path, headers = system.target("stream", fake_port)
    samples: list[float] = []
    conn = http.client.HTTPConnection("127.0.0.1", system.port, timeout=10)
    try:
        for _ in range(count):
            started = time.perf_counter()
            conn.request("POST", path, body=BODIES["stream"], headers=headers)
            response = conn.getresponse()
            first = response.read(1)
            samples.append((time.perf_counter() - started) * 1000)
            rest = response.read()
            if not first or b"[DONE]" not in rest:
                raise RuntimeError("incomplete stream")
    finally:
        conn.close()
    return samples


# --- wrk -----------------------------------------------------------------------------------

_LUA_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def direct_system(fake: Process, fake_port: int) -> System:
    """No proxy at all: the 50 ms ceiling measured, not computed (the fake's timers and wrk's
    own latency put it below 64 / 0.05 s, and no proxy can beat it)."""
    return System("direct", fake, fake_port, DESCRIPTIONS["direct"])


def lua_script(workdir: Path, name: str, body: str, headers: dict[str, str]) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{body}]==]"]
    lines += [f'wrk.headers["{k}"] = [==[{v}]==]' for k, v in headers.items()]
    path = workdir / f"{name}.lua"
    path.write_text("\n".join(lines) + "\n" + _LUA_DONE)
    return path


def run_wrk(
    wrk: str, port: int, path: str, script: Path, seconds: int, connections: int, threads: int
) -> dict[str, Any]:
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}{path}",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("WRKJSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
            return result
    raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")


@dataclass
class Row:
    scenario: str
    system: str
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_us: float = 0.0
    rss_mb: float = 0.0
    errors: int = 0
    requests: int = 0
    upstream_connections: int = 0
    note: str = ""
    samples: list[float] = field(default_factory=list)


def measure(
    wrk: str,
    system: System,
    scenario: str,
    fake_port: int,
    args: argparse.Namespace,
    workdir: Path,
) -> Row:
    path, headers = system.target(scenario, fake_port)
    script = lua_script(workdir, f"{system.name}-{scenario}", BODIES[scenario], headers)
    if args.warmup > 0:
        run_wrk(wrk, system.port, path, script, args.warmup, args.connections, args.threads)
    pid = system.process.pid
    connections = fake_stats(fake_port)["connections"]
    ticks = cpu_ticks(pid)
    stats = run_wrk(wrk, system.port, path, script, args.duration, args.connections, args.threads)
    used = (cpu_ticks(pid) - ticks) / CLK_TCK
    connections = fake_stats(fake_port)["connections"] - connections
    requests = int(stats["requests"])
    seconds = stats["duration_us"] / 1e6
    errors = sum(int(stats[k]) for k in ("connect", "read", "write", "status", "timeout"))
    return Row(
        scenario,
        system.name,
        rps=requests / seconds if seconds else 0.0,
        p50_ms=stats["p50_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        cpu_us=used / requests * 1e6 if requests else float("nan"),
        rss_mb=rss_mb(pid),
        errors=errors,
        requests=requests,
        upstream_connections=connections,
    )


def fake_stats(port: int) -> dict[str, int]:
    """Connections and requests the fake provider saw since it started."""
    status, body = http_request(port, "GET", "/stats", {}, None, timeout=5.0)
    if status != 200:
        raise RuntimeError(f"fake provider /stats answered {status}")
    stats: dict[str, int] = json.loads(body)
    return stats


# --- output --------------------------------------------------------------------------------


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(
        h.rjust(w) if i else h.ljust(w)
        for i, (h, w) in enumerate(zip(headers, widths, strict=True))
    )
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def print_load_results(
    rows: list[Row], systems: list[str], connections: int, delay_ms: float
) -> None:
    ceiling = connections / (delay_ms / 1000)
    for scenario in SCENARIOS:
        block = [r for r in rows if r.scenario == scenario]
        if not block:
            continue
        title = {
            "instant": f"instant JSON answer, {connections} connections",
            "stream": f"SSE stream of 50 chunks, {connections} connections",
            "delay": (
                f"{delay_ms:.0f} ms model latency, {connections} connections "
                f"(ceiling {connections} / {delay_ms / 1000:g} s = {ceiling:.0f} req/s)"
            ),
        }[scenario]
        print(f"\n[{scenario}] {title}")
        bare = next((r for r in block if r.system == "bare" and not r.note), None)
        direct = next((r for r in block if r.system == "direct" and not r.note), None)
        table: list[list[str]] = []
        for name in systems:
            row = next((r for r in block if r.system == name), None)
            if row is None:
                continue
            if row.note:
                table.append([name, *["-"] * 9, row.note])
                continue
            x_rps = f"{row.rps / bare.rps:.2f}" if bare else "-"
            x_cpu = f"{row.cpu_us / bare.cpu_us:.2f}" if bare and bare.cpu_us else "-"
            extra = ""
            if scenario == "delay":
                extra = f"{row.rps / ceiling:.2f} of {ceiling:.0f}"
                if direct is not None:
                    extra += f", {row.rps / direct.rps:.2f} of direct"
            if row.errors:
                extra = (extra + f"; {row.errors} errors/non-2xx").lstrip("; ")
            table.append(
                [
                    name,
                    f"{row.rps:,.0f}",
                    x_rps,
                    f"{row.p50_ms:.2f}",
                    f"{row.p99_ms:.2f}",
                    f"{row.cpu_us:,.0f}",
                    x_cpu,
                    f"{row.rss_mb:.0f}",
                    f"{row.requests:,}",
                    f"{row.upstream_connections:,}",
                    extra,
                ]
            )
        print_table(
            [
                "system",
                "req/s",
                "x bare",
                "p50 ms",
                "p99 ms",
                "CPU us/req",
                "CPU x bare",
                "RSS MB",
                "requests",
                "upstream conns",
                "note",
            ],
            table,
        )


# --- in-process ----------------------------------------------------------------------------


def run_inprocess(args: argparse.Namespace, fake_port: int | None) -> dict[str, str]:
    import fake_upstream
    import host_app
    import inprocess

    host_app.configure("json")  # completion events rendered to JSON into /dev/null
    quick = args.quick
    print("\n== in-process: pass-through (requests the middleware does not intercept) ==")
    rows = inprocess.passthrough_ns(20_000 if quick else 300_000, 3 if quick else 7)
    extra = {"passthrough": f"{rows[0]['added_ns']:.0f} ns ({rows[0]['path']})"}
    print_table(
        ["request", "bare app ns", "with middleware ns", "added ns"],
        [
            [r["path"], f"{r['bare_ns']:.0f}", f"{r['middleware_ns']:.0f}", f"{r['added_ns']:.0f}"]
            for r in rows
        ],
    )
    stream_body = b"".join(fake_upstream.sse_events(50))
    total, rounds = (300, 3) if quick else (4000, 5)
    print(
        "\n== in-process: intercepted POST /v1/completions, httpx.MockTransport upstream"
        f" (CPU: best of {rounds} interleaved slices) =="
    )
    rows = inprocess.intercepted_us(
        stream_body, fake_upstream.COMPLETION_BODY, total, rounds=rounds
    )
    print_table(
        ["scenario", "in flight", "requests", "us/request (CPU)", "failures"],
        [
            [
                r["scenario"],
                str(r["concurrency"]),
                str(r["requests"]),
                f"{r['cpu_us']:.0f}",
                str(r["failures"]),
            ]
            for r in rows
        ],
    )
    if fake_port is not None:
        print(
            "\n== in-process: upstream clients on loopback (fake provider on another core),"
            f" 64 in flight, CPU of this process only, best of {rounds} interleaved slices =="
        )
        rows = inprocess.client_variants_us(
            f"http://127.0.0.1:{fake_port}", total, 64, rounds=rounds
        )
        print_table(
            ["what", "requests", "CPU us/request", "failures"],
            [
                [r["what"], str(r["requests"]), f"{r['cpu_us']:.0f}", str(r["failures"])]
                for r in rows
            ],
        )
    if args.profile:
        print("\n== cProfile: intercepted instant path ==")
        base = f"http://127.0.0.1:{fake_port}" if fake_port is not None else None
        print(
            inprocess.profile_intercepted(
                base, stream_body, fake_upstream.COMPLETION_BODY, total, 64, args.profile_top
            )
        )
    return extra


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark portkey_mw against a bare aiohttp proxy (and the Node gateway)."
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before each")
    parser.add_argument(
        "--quick", action="store_true", help="2 s per measurement, fewer iterations"
    )
    parser.add_argument("--no-wrk", action="store_true", help="in-process measurements only")
    parser.add_argument("--no-inprocess", action="store_true", help="skip in-process numbers")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat every measurement, interleaved; the median round is reported (odd counts)",
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument(
        "--systems",
        default=",".join(DEFAULT_SYSTEMS),
        help=f"comma list; also: {', '.join(EXTRA_SYSTEMS)}",
    )
    parser.add_argument(
        "--node", action="store_true", help=f"add the Node gateway ({NODE_GATEWAY})"
    )
    parser.add_argument(
        "--node-dir",
        type=Path,
        default=NODE_CACHE / "node-gateway-1.15.2",
        help="where npm installs the Node gateway (outside the repo)",
    )
    parser.add_argument(
        "--sut-cpu",
        type=int,
        default=None,
        help="core of the systems under test (default: the first allowed)",
    )
    parser.add_argument("--ttft-requests", type=int, default=None)
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile the in-process intercepted path"
    )
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="after the table, py-spy each middleware system under load; stacks into DIR",
    )
    parser.add_argument("--profile-scenarios", default="instant")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 2)
        args.warmup = min(args.warmup, 1)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.systems = [s for s in args.systems.split(",") if s]
    args.profile_scenarios = [s for s in args.profile_scenarios.split(",") if s]
    if args.node and "node" not in args.systems:
        args.systems.append("node")
    for scenario in args.scenarios:
        if scenario not in SCENARIOS:
            parser.error(f"unknown scenario {scenario!r}")
    for system in args.systems:
        if system not in DEFAULT_SYSTEMS + EXTRA_SYSTEMS:
            parser.error(f"unknown system {system!r}")
    if args.duration < 1 or args.rounds < 1 or args.rounds > 9:
        parser.error("--duration must be >= 1 and --rounds between 1 and 9")
    return args


def cpu_plan(sut_cpu: int | None) -> tuple[set[int] | None, set[int] | None]:
    """(cores of the systems under test, cores of wrk + fake + this script)."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    sut = sut_cpu if sut_cpu is not None and sut_cpu in allowed else allowed[0]
    return {sut}, {c for c in allowed if c != sut}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path("/proc/self/stat").exists():
        print("benchmarks/run.py needs Linux (/proc) for CPU and RSS accounting", file=sys.stderr)
        return 2
    wrk = shutil.which("wrk")
    if wrk is None and not args.no_wrk:
        print(
            "wrk is not installed: the load tests need it.\n"
            "  Debian/Ubuntu: apt-get update && apt-get install -y wrk\n"
            "  (or run with --no-wrk for the in-process measurements only)",
            file=sys.stderr,
        )
        return 2

    # Turn SIGTERM/SIGHUP into an exception so the finally below stops every child.
    def _stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    with contextlib.suppress(ValueError, AttributeError):
        signal.signal(signal.SIGHUP, _stop)

    sut_cpus, load_cpus = cpu_plan(args.sut_cpu)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; ", end="")
    if sut_cpus and load_cpus:
        print(
            f"systems under test pinned to core {min(sut_cpus)}, wrk + fake provider to "
            f"{','.join(map(str, sorted(load_cpus)))}"
        )
        os.sched_setaffinity(0, load_cpus)  # the fake and wrk inherit it
    else:
        print("one core only: nothing pinned (numbers will mix the load generator in)")

    with tempfile.TemporaryDirectory(prefix="portkey_mw-bench-") as tmp:
        workdir = Path(tmp)
        procs = Processes(workdir)
        try:
            return run(args, wrk, procs, workdir, sut_cpus, load_cpus)
        except KeyboardInterrupt:
            print("\ninterrupted: stopping every process we started", file=sys.stderr)
            return 130
        finally:
            procs.stop_all()


def run(
    args: argparse.Namespace,
    wrk: str | None,
    procs: Processes,
    workdir: Path,
    sut_cpus: set[int] | None,
    load_cpus: set[int] | None,
) -> int:
    fake_port = free_port()
    fake = procs.spawn(
        "fake", [sys.executable, str(HERE / "fake_upstream.py"), "--port", str(fake_port)]
    )
    wait_ready(fake, fake_port, "/health")

    extra: dict[str, str] = {}
    if not args.no_inprocess:
        # The in-process part runs here: give it the systems' core while it runs.
        with _affinity(sut_cpus, load_cpus):
            extra = run_inprocess(args, fake_port)
    if args.no_wrk or wrk is None:
        return 0

    print("\n== load: wrk, one system at a time ==")
    systems = start_systems(args.systems, procs, fake_port, sut_cpus, args.node_dir)
    if "delay" in args.scenarios:
        systems.insert(0, direct_system(fake, fake_port))
    for system in systems:
        print(f"  {system.name:<18} pid {system.process.pid:<7} {system.description}")
    broken = preflight_all(systems, args.scenarios, fake_port)
    started = time.monotonic()
    runs = load_rounds(args, wrk, systems, fake_port, workdir, broken)
    print(f"  ({time.monotonic() - started:.0f} s of load)")
    rows = median_rows(args.scenarios, systems, runs, broken)

    print_load_results(rows, [s.name for s in systems], args.connections, 50.0)
    if "stream" in args.scenarios:
        ttft = print_ttft(systems, fake_port, broken, args)
        if "bare" in ttft and "middleware" in ttft:
            extra["ttft"] = f"{ttft['middleware'] - ttft['bare']:+.2f} ms (p50, unloaded)"
    if args.rounds > 1:
        print_rounds(rows)
    print_summary(rows, extra)
    if args.py_spy is not None:
        profile_live(args, wrk, systems, fake_port, workdir, broken)
    if args.json is not None:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    return 0


def print_rounds(rows: list[Row]) -> None:
    print("\nreq/s of every round (median reported):")
    for row in rows:
        if row.samples:
            spread = ", ".join(f"{s:,.0f}" for s in row.samples)
            print(f"  {row.scenario:<8} {row.system:<18} {spread}")


def load_rounds(
    args: argparse.Namespace,
    wrk: str,
    systems: list[System],
    fake_port: int,
    workdir: Path,
    broken: dict[tuple[str, str], str],
) -> dict[tuple[str, str], list[Row]]:
    """Every (scenario, system) measured in turn, ``--rounds`` times; failures go to broken."""
    runs: dict[tuple[str, str], list[Row]] = {}
    for round_ in range(args.rounds):
        for scenario in args.scenarios:
            for system in systems:
                key = (scenario, system.name)
                if key in broken or not system.measures(scenario):
                    continue
                label = f"round {round_ + 1}/{args.rounds}: " if args.rounds > 1 else ""
                print(f"  {label}{scenario:<8} {system.name:<18}", end=" ", flush=True)
                if not system.process.alive():
                    broken[key] = "process died"
                    print("process died:\n" + system.process.tail())
                    continue
                try:
                    row = measure(wrk, system, scenario, fake_port, args, workdir)
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    broken[key] = f"wrk failed: {exc}"
                    print(broken[key])
                    continue
                runs.setdefault(key, []).append(row)
                print(f"{row.rps:>9,.0f} req/s  {row.cpu_us:>6,.0f} us CPU/req")
    return runs


def median_rows(
    scenarios: list[str],
    systems: list[System],
    runs: dict[tuple[str, str], list[Row]],
    broken: dict[tuple[str, str], str],
) -> list[Row]:
    rows: list[Row] = []
    for scenario in scenarios:
        for system in systems:
            key = (scenario, system.name)
            if key in runs:
                ordered = sorted(runs[key], key=lambda r: r.rps)
                chosen = ordered[len(ordered) // 2]
                chosen.samples = [r.rps for r in runs[key]]
                rows.append(chosen)
            elif key in broken:
                rows.append(Row(scenario, system.name, note=broken[key]))
    return rows


def profile_live(
    args: argparse.Namespace,
    wrk: str,
    systems: list[System],
    fake_port: int,
    workdir: Path,
    broken: dict[tuple[str, str], str],
) -> None:
    """py-spy on each middleware system under an extra wrk run (the table is not affected)."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        print("\npy-spy not found (pip install py-spy): no live profile")
        return
    out_dir: Path = args.py_spy
    out_dir.mkdir(parents=True, exist_ok=True)
    for system in systems:
        if not system.name.startswith("middleware"):
            continue
        for scenario in args.profile_scenarios:
            if (scenario, system.name) in broken:
                continue
            path, headers = system.target(scenario, fake_port)
            script = lua_script(workdir, f"spy-{system.name}-{scenario}", BODIES[scenario], headers)
            raw = out_dir / f"{system.name}-{scenario}.txt"
            seconds = max(args.duration, 5)
            command = [py_spy, "record", "--pid", str(system.process.pid), "--duration"]
            command += [str(seconds), "--rate", "500", "--format", "raw", "--nonblocking"]
            spy = subprocess.Popen(
                [*command, "--output", str(raw)],
                stdout=subprocess.DEVNULL,
                stderr=(workdir / "py-spy.log").open("ab"),
            )
            try:
                time.sleep(0.5)  # let py-spy attach before the load starts
                ticks = cpu_ticks(system.process.pid)
                stats = run_wrk(
                    wrk, system.port, path, script, seconds + 1, args.connections, args.threads
                )
                used = (cpu_ticks(system.process.pid) - ticks) / CLK_TCK
                spy.wait(timeout=seconds + 30)
            finally:
                if spy.poll() is None:
                    spy.kill()
                    spy.wait(timeout=5)
            if not raw.exists():
                print(f"\npy-spy produced nothing for {system.name}/{scenario}:")
                print((workdir / "py-spy.log").read_text(errors="replace")[-600:])
                continue
            cpu_us = used / max(int(stats["requests"]), 1) * 1e6
            print(
                f"\n== py-spy: {system.name}, {scenario} under load: {cpu_us:,.0f} us CPU/request"
                f" (a share of x% is about x% of that; stacks in {raw}) =="
            )
            print(summarize_stacks(raw.read_text(), args.profile_top, cpu_us))


def summarize_stacks(collapsed: str, top: int, cpu_us: float | None = None) -> str:
    """Self shares per package and per function, inclusive shares per function, from
    py-spy's collapsed stacks. Stacks start at the coroutine a task resumed (uvloop runs
    tasks from C), and a sample with no Python frame is time in uvloop/the kernel."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    packages: dict[str, int] = {}
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_frame_name(f) for f in stack.split(";") if f.strip()]
        leaf = frames[-1] if frames else "(no Python frame: uvloop C code, syscalls)"
        own[leaf] = own.get(leaf, 0) + count
        package = _package(leaf)
        packages[package] = packages.get(package, 0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count
    if not samples:
        return "(no samples)"
    lines = [f"{samples} samples of busy time; self % by package:"]
    for name, count in sorted(packages.items(), key=lambda kv: -kv[1]):
        share = count / samples
        us = f" ~{share * cpu_us:5.0f} us/req" if cpu_us else ""
        lines.append(f"  {share * 100:5.1f}%{us}  {name}")
    lines.append("self % by function (time in the function itself):")
    for name, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {count / samples * 100:5.1f}%  {name}")
    lines.append("inclusive % by function (the function and what it calls):")
    for name, count in sorted(total.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {count / samples * 100:5.1f}%  {name}")
    return "\n".join(lines)


def _package(frame: str) -> str:
    if "(" not in frame or frame.startswith("(no Python"):
        return "uvloop/kernel (no Python frame)"
    where = frame.rsplit("(", 1)[1].rstrip(")")
    head = where.split("/", 1)[0] if "/" in where else where
    return head.removesuffix(".py")


def _frame_name(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (package/file.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    else:
        where = where.replace(str(HERE.parent) + "/", "")
    return f"{name} ({where})" if where else name


@contextlib.contextmanager
def _affinity(cpus: set[int] | None, restore: set[int] | None) -> Iterator[None]:
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        if restore:
            os.sched_setaffinity(0, restore)


def print_ttft(
    systems: list[System],
    fake_port: int,
    broken: dict[tuple[str, str], str],
    args: argparse.Namespace,
) -> dict[str, float]:
    """Prints the unloaded TTFB table; returns the p50 of each system."""
    count = args.ttft_requests or (30 if args.quick else 200)
    print(f"\n[stream] time to first body byte, unloaded, {count} sequential requests")
    table: list[list[str]] = []
    bare_p50: float | None = None
    p50s: dict[str, float] = {}
    for system in systems:
        if ("stream", system.name) in broken or not system.measures("stream"):
            continue
        try:
            samples = ttft_ms(system, fake_port, count)
        except (OSError, RuntimeError, http.client.HTTPException) as exc:
            table.append([system.name, "-", "-", "-", f"failed: {exc}"])
            continue
        p50 = p50s[system.name] = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1] if len(samples) >= 10 else max(samples)
        if system.name == "bare":
            bare_p50 = p50
        diff = f"{p50 - bare_p50:+.2f}" if bare_p50 is not None else "-"
        table.append([system.name, f"{p50:.2f}", f"{p90:.2f}", diff, ""])
    if table:
        print_table(["system", "p50 ms", "p90 ms", "p50 vs bare ms", "note"], table)
    return p50s


def delay_lines(by: dict[tuple[str, str], Row]) -> list[tuple[str, str]]:
    """The 50 ms scenario against the measured ceiling (``direct``) and against 64 / 0.05 s."""
    lines: list[tuple[str, str]] = []
    direct = by.get(("delay", "direct"))
    for system in ("bare", "middleware"):
        row = by.get(("delay", system))
        if row is None:
            continue
        target = " (target >= 0.95)" if system == "middleware" else ""
        of_1280 = f"{row.rps / 1280:.2f} of 64 / 0.05 s = 1280"
        if direct is None:
            lines.append((f"50 ms: {system} / ceiling 1280{target}", of_1280))
        else:
            label = f"50 ms: {system} / direct (the measured ceiling){target}"
            lines.append((label, f"{row.rps / direct.rps:.2f} ({of_1280})"))
    return lines


def print_summary(rows: list[Row], extra: dict[str, str]) -> None:
    """The issue's targets, as ratios of this run."""
    by = {(r.scenario, r.system): r for r in rows if not r.note}
    lines: list[tuple[str, str]] = []

    def ratio(scenario: str, system: str, reference: str) -> str | None:
        row, ref = by.get((scenario, system)), by.get((scenario, reference))
        if row is None or ref is None:
            return None
        cpu = f", CPU/request {row.cpu_us / ref.cpu_us:.2f}x" if ref.cpu_us else ""
        return f"{row.rps / ref.rps:.2f}x req/s{cpu}"

    for scenario in ("instant", "stream"):
        for reference, target in (("bare", " (target >= 0.6)"), ("bare-asgi", "")):
            value = ratio(scenario, "middleware", reference)
            if value is not None:
                lines.append((f"{scenario}: middleware / {reference}{target}", value))
    if "ttft" in extra:
        lines.append(("stream: time to first byte vs bare (target <= +0.5 ms)", extra["ttft"]))
    lines += delay_lines(by)
    value = ratio("instant", "middleware", "node")
    if value is not None:
        lines.append(("instant: middleware / node (target >= 4)", value))
    if "passthrough" in extra:
        lines.append(("pass-through: added per request (target <= 300 ns)", extra["passthrough"]))
    rss = [r.rss_mb for r in rows if r.system == "middleware" and not r.note]
    if rss:
        lines.append(("RSS of the middleware after load (target <= 80 MB)", f"{max(rss):.0f} MB"))
    if lines:
        print("\nsummary (ratios of this run):")
        width = max(len(label) for label, _ in lines)
        for label, value in lines:
            print(f"  {label:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
