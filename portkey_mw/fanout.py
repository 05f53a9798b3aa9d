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


def fan_out_needed(provider: Provider, params: Mapping[str, Any]) -> bool:
    """Whether this request must be split into one call per prompt and sample."""
    if provider.prompt_mode != "text":
        return False
    kind = prompt_kind(params.get("prompt"))
    if kind in ("tokens", "token_lists"):
        raise InvalidRequest(
            f"Provider '{provider.name}' takes text prompts; token-array prompts cannot be sent "
            "to it.",
            param="prompt",
        )
    n = params.get("n") or 1
    split = kind == "texts" or (n > 1 and not provider.native_n)
    if split and params.get("stream") is True:
        param = "prompt" if kind == "texts" and len(params["prompt"]) > 1 else "n"
        if param == "prompt" or n > 1:
            raise InvalidRequest(
                f"Provider '{provider.name}' takes one prompt and one sample per call, so a "
                f"stream cannot carry several; send a single prompt with n=1 to stream.",
                param=param,
            )
        return True
    return split


async def run_fanned_out(
    router: Router, leaf: Leaf, params: Mapping[str, Any], state: RequestState
) -> Answer:
    prompts = params["prompt"] if isinstance(params.get("prompt"), list) else [params.get("prompt")]
    n = 1 if leaf.target.provider.native_n else params.get("n") or 1
    calls = [
        {**{k: v for k, v in params.items() if not (k == "n" and n > 1)}, "prompt": prompt}
        for prompt in prompts
        for _ in range(n)
    ]
    if len(calls) == 1:
        return await router.send(leaf, calls[0], state)
    answers = await asyncio.gather(*(router.send(leaf, call, state) for call in calls))
    failed = next((a for a in answers if not a.ok or a.stream is not None), None)
    if failed is not None:
        for answer in answers:
            if answer is not failed:
                await answer.aclose()
        return failed
    return _merge(answers)


def _merge(answers: list[Answer]) -> Answer:
    bodies = [_ANY.decode(a.body or b"{}") for a in answers]
    merged: dict[str, Any] = dict(bodies[0])
    choices: list[Any] = []
    usage = Usage()
    for body in bodies:
        for choice in body.get("choices") or ():
            # prompt i, sample j -> i * n + j, also when the provider made the n samples itself
            choices.append({**choice, "index": len(choices)})
        raw = body.get("usage")
        if isinstance(raw, dict):
            usage.prompt_tokens += int(raw.get("prompt_tokens") or 0)
            usage.completion_tokens += int(raw.get("completion_tokens") or 0)
            usage.total_tokens += int(raw.get("total_tokens") or 0)
    merged["choices"] = choices
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
