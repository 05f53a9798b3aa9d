"""Conditional-routing queries over ``metadata.*``, ``params.*`` and ``url.pathname``.

Operators: ``$eq $ne $gt $gte $lt $lte $in $nin $regex $and $or``; a plain value means
equality; several keys in one query must all hold. ``$regex`` patterns come from clients, so
they run on the ``regex`` engine with a length cap and a hard time limit: a pathological
pattern is a 400, never a stalled event loop. Unlike the Portkey gateway, dotted keys
may go deeper than two segments (``metadata.user.plan`` would look up ``user`` then
``plan``), and a malformed query is a 400, never a 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, NoReturn

import regex

from portkey_mw.errors import InvalidRequest

# isinstance() against a tuple: ``int | float`` would build a union object on every call.
_NUMBERS = (int, float)

MAX_PATTERN = 512
REGEX_TIMEOUT_S = 0.05

_MISSING = object()


def matches(query: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    """Whether every clause of ``query`` holds in ``context``."""
    for key, condition in query.items():
        if key == "$and":
            if not all(matches(_query(q), context) for q in _clauses(condition, key)):
                return False
        elif key == "$or":
            if not any(matches(_query(q), context) for q in _clauses(condition, key)):
                return False
        elif key.startswith("$"):
            _bad(f"unsupported operator '{key}' at the top of a query")
        elif not _holds(condition, _lookup(context, key)):
            return False
    return True


def _clauses(value: Any, operator: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        _bad(f"'{operator}' takes a non-empty list of queries")
    return value


def _query(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        _bad("each query must be a JSON object")
    return value


def _lookup(context: Mapping[str, Any], dotted: str) -> Any:
    node: Any = context
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _holds(condition: Any, value: Any) -> bool:
    if not isinstance(condition, Mapping) or not any(k.startswith("$") for k in condition):
        return value is not _MISSING and value == condition
    return all(_operator(op, arg, value) for op, arg in condition.items())


def _operator(op: str, arg: Any, value: Any) -> bool:
    if op == "$eq":
        return value is not _MISSING and value == arg
    if op == "$ne":
        return value is _MISSING or value != arg
    if op in ("$gt", "$gte", "$lt", "$lte"):
        left, right = _number(value), _number(arg)
        if right is None:
            _bad(f"'{op}' needs a number")
        if left is None:
            return False
        return {
            "$gt": left > right,
            "$gte": left >= right,
            "$lt": left < right,
            "$lte": left <= right,
        }[op]
    if op in ("$in", "$nin"):
        if not isinstance(arg, list):
            _bad(f"'{op}' needs a list")
        found = value is not _MISSING and value in arg
        return found if op == "$in" else not found
    if op == "$regex":
        if not isinstance(arg, str) or len(arg) > MAX_PATTERN:
            _bad(f"'$regex' needs a string of at most {MAX_PATTERN} characters")
        if not isinstance(value, str):
            return False
        try:
            return _compiled(arg).search(value, timeout=REGEX_TIMEOUT_S) is not None
        except TimeoutError:
            _bad("'$regex' took too long to evaluate")
    return _bad(f"unsupported operator '{op}'")


def _number(value: Any) -> int | float | None:
    """Numbers compare exactly (a 400-digit int stays an int); numeric strings as floats."""
    if isinstance(value, bool):
        return None
    if isinstance(value, _NUMBERS):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    try:
        return regex.compile(pattern)
    except (regex.error, OverflowError, RecursionError, ValueError):
        _bad(f"invalid '$regex' pattern {pattern[:64]!r}")


def _bad(message: str) -> NoReturn:
    raise InvalidRequest(
        f"Invalid conditional routing query: {message}.",
        param="x-portkey-config.strategy.conditions",
    )
