"""Bedrock model families: which one a model id belongs to, and its InvokeModel body.

Each family's parameter table follows AWS's documented request schema for that family (the
Bedrock "Inference request parameters" pages), not the Portkey gateway's tables: Cohere takes
``stop_sequences`` (not ``end_sequences``) and no penalties; Titan keeps ``temperature: 0`` and
``stop`` on their own; Claude's body comes from :mod:`portkey_mw.providers.anthropic` (without
``metadata``, which Bedrock's Claude schema does not have). Ranges are AWS's; a value outside
them is a 400 naming the param. No body carries ``model`` (it is in the path) or ``stream``
(the endpoint says it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from portkey_mw.errors import InvalidRequest
from portkey_mw.providers.anthropic import CLAUDE_TEXT_PARAMS, finalize_claude_body, stop_list
from portkey_mw.providers.base import DROP, JSONDict, Params, ParamSpec, ParamTable
from portkey_mw.providers.bedrock import readers
from portkey_mw.providers.bedrock.readers import Piece, Reading


def _honoured(_value: Any, _params: Params) -> Any:
    return DROP


# Params every family honours without a body field: model (in the path), stream (the
# endpoint), n (fanned out by the pipeline), stream_options (usage comes from the metrics).
_COMMON: ParamTable = {
    name: ParamSpec(name, _honoured) for name in ("model", "stream", "n", "stream_options")
}


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    params: ParamTable
    read_body: Callable[[dict[str, Any]], Reading]
    read_chunk: Callable[[dict[str, Any]], list[Piece]]
    finalize: Callable[[JSONDict, Params], JSONDict] | None = None
    # False: InvokeModelWithResponseStream is not offered; a stream is emulated from /invoke.
    streams: bool = True


ANTHROPIC = Family(
    "anthropic",
    {**CLAUDE_TEXT_PARAMS, **_COMMON},
    readers.claude_body,
    readers.claude_chunk,
    finalize=finalize_claude_body,  # max_tokens_to_sample is required on Bedrock too
)

COHERE = Family(
    "cohere",
    {
        "prompt": ParamSpec("prompt"),
        "max_tokens": ParamSpec("max_tokens", minimum=1, maximum=4096),
        "temperature": ParamSpec("temperature", minimum=0, maximum=5),
        "top_p": ParamSpec("p", minimum=0, maximum=1),
        "top_k": ParamSpec("k", minimum=0, maximum=500),
        "stop": ParamSpec("stop_sequences", stop_list),
        "logit_bias": ParamSpec("logit_bias"),
        "return_likelihoods": ParamSpec("return_likelihoods"),
        "truncate": ParamSpec("truncate"),
        **_COMMON,
    },
    readers.cohere_body,
    readers.cohere_chunk,
)

AI21 = Family(
    "ai21",
    {
        "prompt": ParamSpec("prompt"),
        "max_tokens": ParamSpec("maxTokens", minimum=0, maximum=8191),
        "temperature": ParamSpec("temperature", minimum=0, maximum=1),
        "top_p": ParamSpec("topP", minimum=0, maximum=1),
        "stop": ParamSpec("stopSequences", stop_list),
        "presence_penalty": ParamSpec("presencePenalty.scale", minimum=0, maximum=5),
        "frequency_penalty": ParamSpec("frequencyPenalty.scale", minimum=0, maximum=500),
        # AI21's own penalty objects, as documented extras (they win over the OpenAI ones).
        "countPenalty": ParamSpec("countPenalty"),
        "presencePenalty": ParamSpec("presencePenalty"),
        "frequencyPenalty": ParamSpec("frequencyPenalty"),
        **_COMMON,
    },
    readers.ai21_body,
    readers.no_chunks,
    streams=False,
)

TITAN = Family(
    "amazon",
    {
        "prompt": ParamSpec("inputText"),
        "temperature": ParamSpec("textGenerationConfig.temperature", minimum=0, maximum=1),
        "top_p": ParamSpec("textGenerationConfig.topP", minimum=0, maximum=1),
        "max_tokens": ParamSpec("textGenerationConfig.maxTokenCount"),
        "stop": ParamSpec("textGenerationConfig.stopSequences", stop_list),
        **_COMMON,
    },
    readers.titan_body,
    readers.titan_chunk,
)

LLAMA = Family(
    "meta",
    {
        "prompt": ParamSpec("prompt"),
        "max_tokens": ParamSpec("max_gen_len", minimum=1, maximum=2048),
        "temperature": ParamSpec("temperature", minimum=0, maximum=1),
        "top_p": ParamSpec("top_p", minimum=0, maximum=1),
        **_COMMON,
    },
    readers.llama_body,
    readers.llama_chunk,
)

MISTRAL = Family(
    "mistral",
    {
        "prompt": ParamSpec("prompt"),
        "max_tokens": ParamSpec("max_tokens", minimum=1),
        "temperature": ParamSpec("temperature", minimum=0, maximum=1),
        "top_p": ParamSpec("top_p", minimum=0, maximum=1),
        "top_k": ParamSpec("top_k", minimum=1, maximum=200),
        "stop": ParamSpec("stop", stop_list),
        **_COMMON,
    },
    readers.mistral_body,
    readers.mistral_chunk,
)

FAMILIES: dict[str, Family] = {f.name: f for f in (ANTHROPIC, COHERE, AI21, TITAN, LLAMA, MISTRAL)}


def model_id(params: Params) -> str:
    """The client's model id, decoded once (a client may send it already URL-encoded)."""
    model = params.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("Bedrock needs 'model': a model id or ARN.", param="model")
    return unquote(model.strip())


def family_of(model: str) -> Family:
    """The family of a model id, a cross-region inference profile id (``us.anthropic...``,
    ``global.`` ...: the region prefix is skipped) or an ARN naming either."""
    name = model.rsplit("/", 1)[-1] if model.startswith("arn:") else model
    for part in name.split(".")[:2]:
        family = FAMILIES.get(part)
        if family is not None:
            return family
    raise InvalidRequest(
        f"Bedrock model '{model[:200]}' is not in a family this gateway maps to InvokeModel "
        f"text completion ({', '.join(FAMILIES)}). Use a foundation model id, a cross-region "
        "inference profile id (e.g. 'us.anthropic.claude-v2:1') or an ARN ending in one.",
        param="model",
    )
