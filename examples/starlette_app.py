"""Starlette host app with the gateway mounted under /llm (it serves POST /llm/v1/completions).

    uvicorn examples.starlette_app:app

Starlette does not send lifespan events to mounted apps, so the host's own lifespan closes
the gateway's upstream client at shutdown.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from portkey_mw import PortkeyMiddleware


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("host home")


gateway = PortkeyMiddleware(
    Starlette(routes=[Route("/", home)]),
    allowed_custom_hosts=[
        h for h in os.environ.get("PORTKEY_MW_ALLOWED_HOSTS", "").split(",") if h
    ],
)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    await gateway.aclose()


app = Starlette(routes=[Route("/", home), Mount("/llm", app=gateway)], lifespan=lifespan)
