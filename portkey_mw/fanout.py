"""Prompt lists and ``n`` for providers that take one text prompt per call.

OpenAI's semantics: a list of prompts yields one choice per prompt (times ``n``), indexes in
order (prompt ``i``, sample ``j`` → index ``i * n + j``), usage summed. The calls run
concurrently. Streams cannot be merged in order without buffering them, so a stream with a
prompt list or ``n > 1`` on such a provider is a 400 naming the parameter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from portkey_mw.errors import InvalidRequest, encode_json
from portkey_mw.providers.base import Provider, Usage
from portkey_mw.schema import prompt_kind
from portkey_mw.upstream import Answer

if TYPE_CHECKING:
    from portkey_mw.plan import Leaf
    from portkey_mw.routing import RequestState, Router

_ANY = msgspec.json.Decoder()


def _takes_n(provider: Provider) -> bool:
    return provider.native_n if provider.prompt_mode == "text" else "n" in provider.params


def fan_out_needed(provider: Provider, params: Mapping[str, Any], limit: int) -> bool:
    """Whether this request must be split: one call per prompt (providers that take one
    text prompt) and/or per sample (providers without ``n``)."""
    kind = prompt_kind(params.get("prompt"))
    text_only = provider.prompt_mode == "text"
    if text_only and kind in ("tokens", "token_lists"):
        raise InvalidRequest(
            f"Provider '{provider.name}' takes text prompts; token-array prompts cannot be sent "
            "to it.",
            param="prompt",
        )
    n = params.get("n") or 1
    split_prompts = text_only and kind == "texts"
    split_n = n > 1 and not _takes_n(provider)
    if not (split_prompts or split_n):
        return False
    calls = (len(params["prompt"]) if split_prompts else 1) * (n if split_n else 1)
    if calls > limit:
        raise InvalidRequest(
            f"Provider '{provider.name}' takes one prompt and sample per call; this request "
            f"would need {calls} calls, more than this gateway allows ({limit}).",
            param="prompt" if split_prompts else "n",
        )
    if params.get("stream") is True and (split_n or len(params["prompt"]) > 1):
        raise InvalidRequest(
            f"Provider '{provider.name}' takes one prompt and one sample per call, so a stream "
            "cannot carry several; send a single prompt with n=1 to stream.",
            param="n" if split_n else "prompt",
        )
    return True


async def run_fanned_out(
    router: Router, leaf: Leaf, params: Mapping[str, Any], state: RequestState
) -> Answer:
    provider = leaf.target.provider
    text_only = provider.prompt_mode == "text"
    prompt = params.get("prompt")
    prompts = prompt if text_only and isinstance(prompt, list) else [prompt]
    samples = 1 if _takes_n(provider) else params.get("n") or 1
    rest = {k: v for k, v in params.items() if not (k == "n" and samples > 1)}
    calls = [{**rest, "prompt": p} for p in prompts for _ in range(samples)]
    if len(calls) == 1:
        return await router.send(leaf, calls[0], state)
    answers = await asyncio.gather(*(router.send(leaf, call, state) for call in calls))
    failed = next((a for a in answers if not a.ok or a.stream is not None), None)
    if failed is not None:
        for answer in answers:
            if answer is not failed:
                await answer.aclose()
        return failed
    # Text providers: calls are already prompt-major. Others got every prompt in each call
    # (one call per sample): order by (prompt, sample) as OpenAI does.
    return _merge(answers, by_prompt_then_sample=not text_only)


def _merge(answers: list[Answer], *, by_prompt_then_sample: bool) -> Answer:
    bodies = [_ANY.decode(a.body or b"{}") for a in answers]
    merged: dict[str, Any] = dict(bodies[0])
    ranked: list[tuple[int, int, int, Any]] = []
    usage = Usage()
    for call, body in enumerate(bodies):
        for position, choice in enumerate(body.get("choices") or ()):
            local = choice.get("index", position) if isinstance(choice, dict) else position
            key = (local, call) if by_prompt_then_sample else (call, local)
            ranked.append((*key, len(ranked), choice))
        raw = body.get("usage")
        if isinstance(raw, dict):
            usage.prompt_tokens += int(raw.get("prompt_tokens") or 0)
            usage.completion_tokens += int(raw.get("completion_tokens") or 0)
            usage.total_tokens += int(raw.get("total_tokens") or 0)
    ranked.sort(key=lambda item: item[:3])
    merged["choices"] = [{**item[3], "index": index} for index, item in enumerate(ranked)]
    merged["usage"] = usage.as_dict()
    first = answers[0]
    dropped = sorted({d for a in answers for d in a.dropped})
    return Answer(
        first.status,
        first.headers,
        encode_json(merged),
        usage=usage,
        model=first.model,
        upstream_ms=max(a.upstream_ms or 0.0 for a in answers),
        dropped=dropped,
    )
