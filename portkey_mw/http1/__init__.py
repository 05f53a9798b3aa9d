"""A lean HTTP/1.1 client for provider calls: asyncio protocols, llhttp (httptools) parsing,
one keep-alive pool per origin.

Measured in ``benchmarks/``, aiohttp's client was the largest single cost of a completion
(about as much CPU as our whole pipeline and log event together): most of it is generic
machinery a gateway never uses (cookies, redirects, auth, traces, multipart, proxies). This
client does one thing, ``POST`` bytes to a URL and hand back the answer as it arrives, and
keeps what production needs from a client:

- TLS with the system's trust store (``ssl.create_default_context``), SNI, ``http/1.1`` ALPN;
- addresses resolved by the loop (kept 5 minutes) and tried the Happy Eyeballs way
  (``aiohappyeyeballs``, as aiohttp does), so a broken IPv6 route costs 250 ms, not a timeout;
- a pool of keep-alive connections per origin, ``max_connections`` in use at most, idle ones
  closed after ``keepalive_s`` and when the server closes them; a connection is reused only
  after its answer was read to the end and the server did not ask to close it;
- no automatic re-send: a POST is not idempotent (aiohttp and Go's client do not re-send one
  either); a connection the server closed while idle is noticed and dropped before use;
- bodies framed by ``Content-Length``, chunked or the end of the connection; ``gzip`` and
  ``deflate`` decoded in bounded pieces (a small compressed body cannot inflate unbounded);
- a connect timeout and a read timeout (the longest wait for the next bytes), flow control
  for streams (reading pauses while the consumer is behind);
- limits on what a provider can make it hold: 64 KiB without a byte of body (head, chunk
  framing, trailers), a second answer to one request fails the connection;
- failures raised as httpx's exception types, as the other clients do.

The URL is sent exactly as built (a ``%3A`` in a Bedrock model id stays encoded).

Modules: ``request`` (a request's bytes), ``connection`` (the protocol and parser callbacks),
``response`` (headers and body), ``pool`` (one loop's connections), ``client`` (``post``).
"""

from portkey_mw.http1.client import Http1Client
from portkey_mw.http1.response import Http1Response, ResponseHeaders

__all__ = ["Http1Client", "Http1Response", "ResponseHeaders"]
