"""The lean HTTP/1.1 client against real loopback servers that write exact bytes: framing,
keep-alive, decoding, limits, timeouts, TLS and every way a server can misbehave."""

from __future__ import annotations

import asyncio
import gzip
import re
import ssl
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import trustme

from portkey_mw.http1 import Http1Client, Http1Response, ResponseHeaders

Reply = Callable[[asyncio.StreamWriter, int], Awaitable[bool | None]]


class Scripted:
    """A server that reads whole requests and answers each with ``reply(writer, index)``;
    ``reply`` returning ``False`` closes the connection."""

    def __init__(self, reply: Reply, tls: ssl.SSLContext | None = None) -> None:
        self.reply = reply
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> Scripted:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for handler in self._handlers:
            handler.cancel()
        await asyncio.gather(*self._handlers)
        await self._server.wait_closed()

    def url(self, path: str = "/v1/completions", host: str = "127.0.0.1") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                found = re.search(rb"(?im)^content-length: (\d+)\r$", head)
                body = await reader.readexactly(int(found.group(1))) if found else b""
                self.requests.append(head + body)
                if await self.reply(writer, len(self.requests) - 1) is False:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            writer.close()


def answer(writer: asyncio.StreamWriter, body: bytes = b'{"ok":true}', *extra: bytes) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + b"".join(
        line + b"\r\n" for line in extra
    )
    writer.write(head + b"content-length: %d\r\n\r\n" % len(body) + body)


async def ok(writer: asyncio.StreamWriter, index: int) -> None:
    answer(writer)


def client(**options: Any) -> Http1Client:
    settings: dict[str, Any] = {
        "max_connections": 8,
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "user_agent": "portkey_mw/test",
    }
    return Http1Client(**{**settings, **options})


async def read_all(response: Http1Response) -> bytes:
    try:
        return b"".join([piece async for piece in response.chunks()])
    finally:
        await response.aclose()


async def sequential(reply: Reply, times: int) -> tuple[list[bytes], int]:
    """``times`` exchanges one after the other: the bodies read, and the connections the
    server accepted for them."""
    async with Scripted(reply) as server:
        upstream = client()
        bodies = [await read_all(await upstream.post(server.url(), {}, b"")) for _ in range(times)]
        await upstream.aclose()
    return bodies, server.connections


async def test_requests_go_out_as_built_and_one_connection_carries_them() -> None:
    async with Scripted(ok) as server:
        upstream = client()
        for _ in range(5):
            response = await upstream.post(
                server.url("/model/a%3Ab/invoke?x=1"),
                {"content-type": "application/json", "authorization": "Bearer k"},
                b'{"p":1}',
            )
            assert response.status == 200
            assert await response.read_declared(1024) == b'{"ok":true}'
            await response.aclose()
        await upstream.aclose()
    assert server.connections == 1
    sent = server.requests[0].decode()
    assert sent.startswith("POST /model/a%3Ab/invoke?x=1 HTTP/1.1\r\n")
    lines = sent.split("\r\n")
    assert f"host: 127.0.0.1:{server.port}" in lines
    assert "user-agent: portkey_mw/test" in lines
    assert "authorization: Bearer k" in lines
    assert "content-length: 7" in lines
    assert sent.endswith('\r\n\r\n{"p":1}')


async def test_the_request_own_host_and_user_agent_replace_ours_once() -> None:
    async with Scripted(ok) as server:
        upstream = client()
        headers = {"Host": "signed.example", "User-Agent": "mine/1", "Content-Length": "999"}
        await read_all(await upstream.post(server.url(), headers, b"abc"))
        await upstream.aclose()
    lines = server.requests[0].decode().lower().split("\r\n")
    assert [line for line in lines if line.startswith("host:")] == ["host: signed.example"]
    assert [line for line in lines if line.startswith("user-agent:")] == ["user-agent: mine/1"]
    assert [line for line in lines if line.startswith("content-length:")] == ["content-length: 3"]


async def test_chunked_stream_arrives_piece_by_piece_and_the_connection_is_kept() -> None:
    async def chunked(writer: asyncio.StreamWriter, index: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
        writer.write(b"transfer-encoding: chunked\r\n\r\n")
        for n in range(3):
            data = b"data: %d\n\n" % n
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")

    async with Scripted(chunked) as server:
        upstream = client()
        for _ in range(2):
            response = await upstream.post(server.url(), {}, b"{}")
            assert await response.read_declared(1024) is None  # no declared length
            pieces = [piece async for piece in response.chunks()]
            await response.aclose()
            assert len(pieces) >= 2  # relayed as they came, not buffered to the end
            assert b"".join(pieces) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
        await upstream.aclose()
    assert server.connections == 1


async def test_a_body_framed_by_the_end_of_the_connection() -> None:
    async def until_close(writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"a":')
        await writer.drain()
        writer.write(b"1}")
        return False

    assert await sequential(until_close, 2) == ([b'{"a":1}'] * 2, 2)


async def test_connection_close_and_http_1_0_answers_are_not_reused() -> None:
    async def closing(writer: asyncio.StreamWriter, index: int) -> None:
        if index % 2:
            writer.write(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok")
        else:
            answer(writer, b"ok", b"connection: close")

    assert await sequential(closing, 4) == ([b"ok"] * 4, 4)


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS)),  # raw, as IIS
    ],
)
async def test_compressed_answers_are_decoded(
    coding: str, encode: Callable[[bytes], bytes]
) -> None:
    text = b'{"choices":[{"text":"' + b"hello " * 2000 + b'"}]}'

    async def compressed(writer: asyncio.StreamWriter, index: int) -> None:
        answer(writer, encode(text), b"content-encoding: " + coding.encode())

    async with Scripted(compressed) as server:
        upstream = client()
        response = await upstream.post(server.url(), {}, b"")
        assert await response.read_declared(10**6) is None  # the length is not the size
        assert await read_all(response) == text
        await upstream.aclose()
    assert "accept-encoding: gzip, deflate" in server.requests[0].decode().split("\r\n")


async def test_a_small_compressed_body_inflates_in_bounded_pieces() -> None:
    bomb = gzip.compress(b"\0" * (8 * 1024 * 1024))  # ~8 KB on the wire

    async def compressed(writer: asyncio.StreamWriter, index: int) -> None:
        answer(writer, bomb, b"content-encoding: gzip")

    async with Scripted(compressed) as server:
        upstream = client()
        response = await upstream.post(server.url(), {}, b"")
        sizes = [len(piece) async for piece in response.chunks()]
        await response.aclose()
        await upstream.aclose()
    assert sum(sizes) == 8 * 1024 * 1024
    assert max(sizes) <= 256 * 1024  # the caller's size cap gets a say between pieces


async def test_corrupt_or_unknown_codings_are_decoding_errors() -> None:
    async def corrupt(writer: asyncio.StreamWriter, index: int) -> None:
        coding = b"gzip" if index == 0 else b"zstd"
        answer(writer, b"not gzip at all", b"content-encoding: " + coding)

    async with Scripted(corrupt) as server:
        upstream = client()
        for _ in range(2):
            with pytest.raises(httpx.DecodingError):
                await read_all(await upstream.post(server.url(), {}, b""))
        await upstream.aclose()


async def test_interim_answers_are_skipped_and_204_has_no_body() -> None:
    async def interim(writer: asyncio.StreamWriter, index: int) -> None:
        if index == 1:
            writer.write(b"HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n")
        else:
            writer.write(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: x\r\n\r\n"
            )
            answer(writer, b"final")

    async with Scripted(interim) as server:
        upstream = client()
        first = await upstream.post(server.url(), {}, b"")
        assert first.status == 200
        assert "link" not in first.headers
        assert await read_all(first) == b"final"
        second = await upstream.post(server.url(), {}, b"")
        assert (second.status, second.headers["X-A"]) == (204, "1")
        assert await read_all(second) == b""
        third = await upstream.post(server.url(), {}, b"")  # the same connection still works
        assert third.status == 200
        await read_all(third)
        await upstream.aclose()
    assert server.connections == 1


async def test_a_connection_the_server_closed_while_idle_is_not_used() -> None:
    async def once(writer: asyncio.StreamWriter, index: int) -> bool:
        answer(writer)  # keep-alive by the headers, closed right after anyway
        return False

    async with Scripted(once) as server:
        upstream = client()
        for _ in range(3):
            await read_all(await upstream.post(server.url(), {}, b""))
            await asyncio.sleep(0.05)  # the close reaches the client
        await upstream.aclose()
    assert server.connections == 3


async def test_idle_connections_expire_after_keepalive() -> None:
    async with Scripted(ok) as server:
        upstream = client(keepalive_s=0.05)
        await read_all(await upstream.post(server.url(), {}, b""))
        await asyncio.sleep(0.2)  # the sweep closed it
        assert upstream._pool is not None
        assert upstream._pool.idle == {}
        await read_all(await upstream.post(server.url(), {}, b""))
        await upstream.aclose()
    assert server.connections == 2


async def test_read_timeout_and_the_slot_comes_back() -> None:
    async def slow_then_fast(writer: asyncio.StreamWriter, index: int) -> None:
        if index == 0:
            await asyncio.sleep(0.5)
        answer(writer)

    async with Scripted(slow_then_fast) as server:
        upstream = client(read_timeout=0.1, max_connections=1)
        with pytest.raises(httpx.ReadTimeout):
            await upstream.post(server.url(), {}, b"")
        # The only slot is free again, and the late answer is never read by anyone.
        assert await read_all(await upstream.post(server.url(), {}, b"")) == b'{"ok":true}'
        await upstream.aclose()
    assert server.connections == 2


async def test_a_stalled_body_times_out_too() -> None:
    async def stall(writer: asyncio.StreamWriter, index: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345")
        await asyncio.sleep(1)

    async with Scripted(stall) as server:
        upstream = client(read_timeout=0.1)
        response = await upstream.post(server.url(), {}, b"")
        with pytest.raises(httpx.ReadTimeout):
            await read_all(response)
        await upstream.aclose()


async def test_unreachable_providers_are_connect_errors() -> None:
    async with Scripted(ok) as server:
        port = server.port
    upstream = client()
    with pytest.raises(httpx.ConnectError):
        await upstream.post(f"http://127.0.0.1:{port}/", {}, b"")
    with pytest.raises(httpx.ConnectError):
        await upstream.post("http://no-such-host.invalid/", {}, b"")
    await upstream.aclose()


@pytest.mark.parametrize(
    "reply",
    [
        b"SMTP ready\r\n\r\n",  # not HTTP
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345",  # cut short
        b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n",  # head too large
        b"",  # closed without a word
    ],
)
async def test_broken_answers_are_protocol_errors(reply: bytes) -> None:
    async def broken(writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(reply)
        return False

    async with Scripted(broken) as server:
        upstream = client(max_connections=1)
        with pytest.raises(httpx.RemoteProtocolError):
            await read_all(await upstream.post(server.url(), {}, b""))
        await upstream.aclose()


async def test_bytes_sent_to_an_idle_connection_retire_it() -> None:
    async def chatty(writer: asyncio.StreamWriter, index: int) -> None:
        answer(writer)
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nlate!")  # nobody asked

    async with Scripted(chatty) as server:
        upstream = client()
        await read_all(await upstream.post(server.url(), {}, b""))
        await asyncio.sleep(0.1)
        assert await read_all(await upstream.post(server.url(), {}, b"")) == b'{"ok":true}'
        await upstream.aclose()
    assert server.connections == 2


async def test_max_connections_bounds_what_is_in_flight() -> None:
    release = asyncio.Event()

    async def held(writer: asyncio.StreamWriter, index: int) -> None:
        await release.wait()
        answer(writer)

    async with Scripted(held) as server:
        upstream = client(max_connections=2)
        posts = [asyncio.create_task(upstream.post(server.url(), {}, b"")) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert len(server.requests) == 2  # the third waits for a slot
        release.set()
        for post in posts:
            await read_all(await post)
        await upstream.aclose()
    assert server.connections == 2


async def test_an_abandoned_or_cancelled_exchange_closes_its_connection() -> None:
    hold = asyncio.Event()

    async def big_or_held(writer: asyncio.StreamWriter, index: int) -> None:
        if index == 0:  # half a body, then the provider thinks
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"x" * 50_000)
        if index < 2:
            await hold.wait()
        answer(writer, b"x" * 100_000)

    async with Scripted(big_or_held) as server:
        upstream = client(max_connections=1)
        response = await upstream.post(server.url(), {}, b"")
        await response.aclose()  # walked away mid-body: not reusable
        waiting = asyncio.create_task(upstream.post(server.url(), {}, b""))
        await asyncio.sleep(0.05)
        waiting.cancel()  # a client disconnect while the provider thinks
        with pytest.raises(asyncio.CancelledError):
            await waiting
        hold.set()
        body = await read_all(await upstream.post(server.url(), {}, b""))
        assert len(body) == 100_000
        await upstream.aclose()
    assert server.connections == 3


async def test_tls_is_verified_against_the_trust_store() -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)

    async with Scripted(ok, tls=server_context) as server:
        upstream = client(tls_context=trusting)
        response = await upstream.post(server.url(host="localhost"), {}, b"")
        assert await read_all(response) == b'{"ok":true}'
        await upstream.aclose()
        default = client()  # the system's trust store does not know this authority
        with pytest.raises(httpx.ConnectError):
            await default.post(server.url(host="localhost"), {}, b"")
        await default.aclose()


def test_response_headers_are_case_insensitive_and_keep_repeats() -> None:
    headers = ResponseHeaders([(b"X-Rate", b"1"), (b"x-rate", b"2"), (b"Content-Type", b"a/b")])
    assert headers["x-RATE"] == "1"  # the first, as aiohttp's headers read
    assert headers.get("content-type") == "a/b"
    assert "CONTENT-TYPE" in headers
    assert headers.get("missing", "d") == "d"
    assert sorted(headers) == ["content-type", "x-rate"]
    assert len(headers) == 2


async def test_only_http_urls() -> None:
    upstream = client()
    with pytest.raises(httpx.UnsupportedProtocol):
        await upstream.post("ftp://example.com/", {}, b"")
    await upstream.aclose()


async def test_an_answer_left_unread_does_not_leave_its_connection_paused() -> None:
    big = b"x" * 600_000  # past the high-water mark: reading pauses

    async def large(writer: asyncio.StreamWriter, index: int) -> None:
        answer(writer, big if index == 0 else b"small")

    async with Scripted(large) as server:
        upstream = client(read_timeout=1.0)
        response = await upstream.post(server.url(), {}, b"")
        pieces = response.chunks()
        await anext(pieces)  # a slow consumer: it read a little, then left
        await asyncio.sleep(0.1)
        await pieces.aclose()
        await response.aclose()
        # The next exchange must not wait for a read that was never resumed.
        assert await read_all(await upstream.post(server.url(), {}, b"")) == b"small"
        await upstream.aclose()


async def test_a_second_answer_to_one_request_is_never_read_as_part_of_the_first() -> None:
    async def two(writer: asyncio.StreamWriter, index: int) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"
            b"HTTP/1.1 200 OK\r\nx-evil: 1\r\ncontent-length: 5\r\n\r\nevil!"
        )

    async with Scripted(two) as server:
        upstream = client()
        response = await upstream.post(server.url(), {}, b"")
        assert await read_all(response) == b"hi"
        assert all(name != b"x-evil" for name, _ in response.raw_headers)
        second = await upstream.post(server.url(), {}, b"")
        assert await read_all(second) == b"hi"  # a new connection, not the rest of the old
        await upstream.aclose()
    assert server.connections == 2


async def test_an_endless_header_is_cut_off_without_waiting_for_its_end() -> None:
    async def endless(writer: asyncio.StreamWriter, index: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nx-big: ")
        for _ in range(100):
            writer.write(b"a" * 16_384)
            await writer.drain()
        await asyncio.sleep(5)

    async with Scripted(endless) as server:
        upstream = client(read_timeout=3.0)
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.RemoteProtocolError, match="too much without a body"):
            await upstream.post(server.url(), {}, b"")
        assert asyncio.get_running_loop().time() - started < 2.0
        await upstream.aclose()


@pytest.mark.parametrize(
    "headers",
    [{"x-a": "1\r\nx-injected: 1"}, {"x-a": "1\nb"}, {"bad name": "1"}, {"x-a:": "1"}],
)
async def test_header_lines_cannot_be_smuggled(headers: dict[str, str]) -> None:
    async with Scripted(ok) as server:
        upstream = client()
        with pytest.raises(httpx.LocalProtocolError):
            await upstream.post(server.url(), headers, b"")
        await upstream.aclose()
    assert server.requests == []


async def test_a_request_target_is_sent_as_one_token() -> None:
    async with Scripted(ok) as server:
        upstream = client()
        await read_all(await upstream.post(server.url("/a b/é%3A?q=x y"), {}, b""))
        await upstream.aclose()
    assert server.requests[0].startswith(b"POST /a%20b/%C3%A9%3A?q=x%20y HTTP/1.1\r\n")


async def test_an_answer_dropped_without_aclose_gives_its_slot_back() -> None:
    import gc

    async with Scripted(ok) as server:
        upstream = client(max_connections=1)
        response = await upstream.post(server.url(), {}, b"")
        del response
        gc.collect()
        assert await read_all(await upstream.post(server.url(), {}, b"")) == b'{"ok":true}'
        await upstream.aclose()


async def test_interim_answers_keep_a_slow_provider_within_the_read_timeout() -> None:
    async def processing(writer: asyncio.StreamWriter, index: int) -> None:
        for _ in range(6):  # 0.3 s in all, a 102 every 0.05 s
            writer.write(b"HTTP/1.1 102 Processing\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
        answer(writer)

    async with Scripted(processing) as server:
        upstream = client(read_timeout=0.2)
        assert await read_all(await upstream.post(server.url(), {}, b"")) == b'{"ok":true}'
        await upstream.aclose()


async def test_concurrent_new_connections_share_one_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    lookups: list[str] = []
    real = loop.getaddrinfo

    async def counting(host: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        await asyncio.sleep(0.05)
        return await real(host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", counting)
    async with Scripted(ok) as server:
        upstream = client()
        responses = await asyncio.gather(
            *(upstream.post(server.url(host="localhost"), {}, b"") for _ in range(8))
        )
        for response in responses:
            await read_all(response)
        await upstream.aclose()
    assert lookups == ["localhost"]


def test_a_client_used_from_a_new_event_loop_starts_over() -> None:
    async def exchange(upstream: Http1Client, url: str) -> bytes:
        return await read_all(await upstream.post(url, {}, b""))

    async def serve_twice() -> None:
        async with Scripted(ok) as server:
            upstream = client()
            url = server.url()
            # Two loops in one thread, one after the other (a test runner, a CLI's reloads).
            for _ in range(2):
                done = await asyncio.to_thread(asyncio.run, exchange(upstream, url))
                assert done == b'{"ok":true}'

    asyncio.run(serve_twice())


@pytest.mark.parametrize(
    ("head", "first"),
    [
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n", b"hello"),
        # Framed by the connection's end, which closing the client brings about: it must
        # still end in an error, never look like a whole answer.
        (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: 1\n\n", b"data: 1\n\n"),
    ],
)
async def test_closing_the_client_ends_answers_still_being_read(head: bytes, first: bytes) -> None:
    async def endless(writer: asyncio.StreamWriter, index: int) -> None:
        writer.write(head)
        await asyncio.sleep(5)

    async with Scripted(endless) as server:
        upstream = client()
        response = await upstream.post(server.url(), {}, b"")
        pieces = response.chunks()
        assert await anext(pieces) == first
        await upstream.aclose()
        with pytest.raises(httpx.ReadError, match="closed by the gateway"):
            await anext(pieces)
        await response.aclose()


async def test_trailers_are_bounded_and_not_kept() -> None:
    async def trailing(writer: asyncio.StreamWriter, index: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n")
        if index == 0:
            writer.write(b"x-checksum: 1\r\n\r\n")  # a trailer, as the standard allows
            return
        for n in range(10_000):  # trailers without end
            writer.write(b"x-t%d: %s\r\n" % (n, b"a" * 30))
            await writer.drain()

    async with Scripted(trailing) as server:
        upstream = client(read_timeout=3.0)
        first = await upstream.post(server.url(), {}, b"")
        assert await read_all(first) == b"hi"
        assert all(name != b"x-checksum" for name, _ in first.raw_headers)
        flooded = await upstream.post(server.url(), {}, b"")
        with pytest.raises(httpx.RemoteProtocolError, match="too much without a body"):
            await read_all(flooded)
        await upstream.aclose()


@pytest.mark.parametrize("host", ["a..b.example", "x" * 64 + ".example", "[abc"])
async def test_a_host_name_no_resolver_takes_is_a_connect_error(host: str) -> None:
    upstream = client()
    with pytest.raises(httpx.HTTPError):
        await upstream.post(f"https://{host}/v1/completions", {}, b"")
    await upstream.aclose()


async def test_a_lookup_every_waiter_gave_up_on_leaves_no_unretrieved_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import gc
    import socket

    loop = asyncio.get_running_loop()

    async def failing(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.2)
        raise socket.gaierror("no such name")

    monkeypatch.setattr(loop, "getaddrinfo", failing)
    upstream = client(connect_timeout=0.05)
    with pytest.raises(httpx.ConnectTimeout):
        await upstream.post("http://slow-dns.example/", {}, b"")
    await asyncio.sleep(0.3)
    gc.collect()
    assert "never retrieved" not in caplog.text
    await upstream.aclose()


async def test_closing_the_client_ends_an_upload_the_provider_does_not_read() -> None:
    stalled = asyncio.Event()

    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stalled.set()
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(never_reads, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    upstream = client(read_timeout=5.0)
    posting = asyncio.create_task(upstream.post(f"http://127.0.0.1:{port}/", {}, b"x" * 50_000_000))
    await stalled.wait()
    await asyncio.sleep(0.1)
    started = asyncio.get_running_loop().time()
    await upstream.aclose()
    with pytest.raises(httpx.ReadError):
        await posting
    assert asyncio.get_running_loop().time() - started < 1.0
    server.close()


async def test_an_answer_dropped_in_another_thread_gives_its_slot_back_on_its_loop() -> None:
    import threading

    async with Scripted(ok) as server:
        upstream = client(max_connections=1)
        held = [await upstream.post(server.url(), {}, b"")]
        dropper = threading.Thread(target=held.clear)  # the last reference dies there
        dropper.start()
        dropper.join()
        body = await asyncio.wait_for(read_all(await upstream.post(server.url(), {}, b"")), 2)
        assert body == b'{"ok":true}'
        await upstream.aclose()


async def test_two_live_event_loops_keep_their_own_slots() -> None:
    async with Scripted(ok) as server:
        upstream = client(max_connections=1)
        url = server.url()
        held = await upstream.post(url, {}, b"")  # this loop's only slot is taken

        async def elsewhere() -> bytes:
            return await read_all(await upstream.post(url, {}, b""))

        assert await asyncio.to_thread(asyncio.run, elsewhere()) == b'{"ok":true}'
        await read_all(held)
        assert upstream._pool is not None
        assert upstream._pool.slots._value == 1  # back to one, not more
        assert await read_all(await upstream.post(url, {}, b"")) == b'{"ok":true}'
        await upstream.aclose()


@pytest.mark.parametrize(
    ("head", "error"),
    [
        (b"HTTP/1.1 099 Odd\r\ncontent-length: 0\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: xchunked\r\n\r\nbody", None),
    ],
)
async def test_odd_heads_are_read_the_way_llhttp_frames_them(
    head: bytes, error: type[Exception] | None
) -> None:
    async def odd(writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(head)
        return False

    async with Scripted(odd) as server:
        upstream = client()
        if error is None:  # not chunked: the body ends with the connection
            assert await read_all(await upstream.post(server.url(), {}, b"")) == b"body"
        else:
            with pytest.raises(error):
                await read_all(await upstream.post(server.url(), {}, b""))
        await upstream.aclose()
