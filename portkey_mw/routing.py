"""Execute a routing plan: strategies, retries with backoff, per-attempt timeouts.

Strategies are small functions over the plan tree; every attempt is recorded with its JSON
path and status for the response headers and the log event. Retries and fallbacks happen
only before a stream's first byte reaches the client: an attempt returns a stream already
opened up to its first frame, and a success stops the walk.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine, Mapping
from typing import Any

import msgspec

from portkey_mw.clients import UpstreamClient
from portkey_mw.conditions import matches
from portkey_mw.errors import GatewayError, InvalidRequest
from portkey_mw.events import debug_enabled, logger, mask
from portkey_mw.fanout import fan_out_needed, run_fanned_out
from portkey_mw.headers import RequestHeaders, check_upstream_headers
from portkey_mw.plan import Branch, Leaf, Node
from portkey_mw.providers.base import Target, UpstreamRequest
from portkey_mw.response_cache import ResponseCache
from portkey_mw.schema import validate_params
from portkey_mw.settings import Settings
from portkey_mw.tracing import RequestTrace, Tracer, attempt_done
from portkey_mw.upstream import Answer, gateway_answer, send_attempt

DEFAULT_RETRY_CODES = frozenset({429, 500, 502, 503, 504})


class AttemptRecord(msgspec.Struct, gc=False):
    path: str
    provider: str
    status: int
    upstream_ms: float | None


class Outcome(msgspec.Struct):
    """The answer the client gets, which leaf produced it, and how we got there."""

    answer: Answer
    leaf: Leaf | None
    retry_count: int = 0
    attempts: list[AttemptRecord] = msgspec.field(default_factory=list)


class RequestState(msgspec.Struct, gc=False):
    params: dict[str, Any]
    headers: RequestHeaders
    pathname: str
    trace: RequestTrace
    attempts: list[AttemptRecord] = msgspec.field(default_factory=list)
    waited_ms: float = 0.0


class Router:
    def __init__(
        self,
        client: UpstreamClient,
        settings: Settings,
        cache: ResponseCache,
        tracer: Tracer,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.cache = cache
        self.tracer = tracer
        self.rng = rng or random.Random()

    def run(self, node: Node, state: RequestState) -> Coroutine[Any, Any, Outcome]:
        """The walk of ``node`` (not ``async`` itself: choosing a child adds no frame)."""
        while isinstance(node, Branch):
            mode = node.strategy.mode
            if mode == "fallback":
                return self._fallback(node, state)
            if mode == "loadbalance":
                node = node.children[self._pick(node.weights)]
            elif mode == "conditional":
                node = self._condition(node, state)
            else:
                node = node.children[0]
        return self._leaf(node, state)

    async def _fallback(self, node: Branch, state: RequestState) -> Outcome:
        codes = node.strategy.on_status_codes
        outcome: Outcome | None = None
        for child in node.children:
            if outcome is not None:
                await outcome.answer.aclose()
            outcome = await self.run(child, state)
            stop = outcome.answer.status not in codes if codes else outcome.answer.ok
            if stop:
                break
        assert outcome is not None  # a Branch always has children (config validation)
        return outcome

    def _pick(self, weights: tuple[float, ...]) -> int:
        draw = self.rng.random() * sum(weights)
        for index, weight in enumerate(weights):
            if weight > 0 and draw < weight:
                return index
            draw -= weight
        return max(i for i, w in enumerate(weights) if w > 0)

    def _condition(self, node: Branch, state: RequestState) -> Node:
        context = {
            "metadata": state.headers.metadata,
            "params": state.params,
            "url": {"pathname": state.pathname},
        }
        chosen = None
        for condition in node.strategy.conditions or ():
            if matches(condition.query, context):
                chosen = condition.then
                break
        chosen = chosen or node.strategy.default
        if chosen is None:
            raise InvalidRequest(
                f"No condition of the conditional strategy at {node.path} matched this request "
                "and it has no 'default' target.",
                param="x-portkey-config.strategy.default",
            )
        return node.children[node.names.index(chosen)]

    async def _leaf(self, leaf: Leaf, state: RequestState) -> Outcome:
        retry = leaf.retry
        attempts = retry.attempts if retry is not None else 0
        codes = (
            frozenset(retry.on_status_codes)
            if retry is not None and retry.on_status_codes
            else DEFAULT_RETRY_CODES
        )
        waited = 0.0
        answer = Answer(500)
        for number in range(attempts + 1):
            try:  # one attempt (inline: a coroutine frame fewer on every request)
                params = _effective_params(state.params, leaf.override_params)
                if fan_out_needed(leaf.target.provider, params, self.settings.max_fanout):
                    answer = await run_fanned_out(self, leaf, params, state)
                else:
                    answer = await self.send(leaf, params, state)
            except GatewayError as error:
                answer = gateway_answer(error)
            state.attempts.append(
                AttemptRecord(
                    leaf.path, leaf.target.provider.name, answer.status, answer.upstream_ms
                )
            )
            log = logger()
            if debug_enabled(log):  # usually not: then no event is built at all
                log.debug(
                    "completion_attempt",
                    target=leaf.path,
                    provider=leaf.target.provider.name,
                    attempt=number,
                    status=answer.status,
                    upstream_ms=answer.upstream_ms,
                    cache_status=answer.cache_status,
                )
            retriable = answer.status in codes or answer.error_type == "upstream_error"
            if answer.ok or not retriable:
                return Outcome(answer, leaf, number, state.attempts)
            if number == attempts:
                break
            delay = self._backoff(number)
            if answer.retry_after_s is not None:
                if answer.retry_after_s > self.settings.retry_after_cap_s - waited:
                    break  # the provider asks for longer than we may wait: answer now
                delay = max(delay, answer.retry_after_s)
            waited += delay
            state.waited_ms += delay * 1000
            await answer.aclose()
            await asyncio.sleep(delay)
        return Outcome(answer, leaf, -1 if attempts else 0, state.attempts)

    def _backoff(self, number: int) -> float:
        """Exponential backoff with equal jitter: half fixed, half random."""
        base = min(self.settings.retry_backoff_ms * (2**number), self.settings.retry_backoff_max_ms)
        return float(base / 2 + self.rng.random() * base / 2) / 1000

    async def send(self, leaf: Leaf, params: Mapping[str, Any], state: RequestState) -> Answer:
        """One upstream call for one leaf with these (already effective) params."""
        provider = leaf.target.provider
        request, dropped = provider.build_request(leaf.target, params)
        request = _with_forwarded(request, leaf.forward_headers, state.headers.raw)
        check_upstream_headers(request.headers)
        lookup = None
        if leaf.cache is not None:
            lookup, hit = await self.cache.lookup(leaf.cache, leaf.target, request, state.headers)
            if hit is not None:
                hit.dropped = dropped
                return hit
        model = params.get("model")
        trace = state.trace
        span = self.tracer.start_attempt(
            trace, provider.name, model if isinstance(model, str) else None
        )
        if span is not None or trace.propagate:
            request.headers.update(trace.upstream_headers(span))
        try:
            answer = await send_attempt(
                self.client, request, provider, params, self.settings, leaf.timeout_ms
            )
        except BaseException:
            if span is not None:
                span.end()
            raise
        attempt_done(span, answer.status, answer.model, answer.usage)
        if not answer.ok and answer.body:
            answer.body = scrub_secrets(answer.body, leaf.target)
        answer.dropped = dropped
        if lookup is not None:
            await self.cache.keep(lookup, answer)
        return answer


def scrub_secrets(body: bytes, target: Target) -> bytes:
    """A provider that echoes the credentials it got must not hand them to the client (they
    may be the operator's, from a virtual key)."""
    for secret in target.secrets():
        if len(secret) >= 8 and secret.encode() in body:
            body = body.replace(secret.encode(), mask(secret).encode())
    return body


def _effective_params(params: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    if not overrides:
        return params
    merged = {**params, **overrides}
    validate_params(merged)
    return merged


def _with_forwarded(
    request: UpstreamRequest, names: tuple[str, ...], client_headers: Mapping[str, str]
) -> UpstreamRequest:
    if not names:
        return request
    for name in names:
        value = client_headers.get(name)
        if value is not None:
            request.headers[name] = value
    return request
