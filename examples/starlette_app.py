"""Starlette host app with the gateway, mounted under /llm (so it serves POST /llm/v1/completions).

    uvicorn examples.starlette_app:app
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from portkey_mw import PortkeyMiddleware


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("host home")


llm = Starlette(
    routes=[Route("/", home)],
    middleware=[
        Middleware(
            PortkeyMiddleware,
            allowed_custom_hosts=[h for h in os.environ.get("PORTKEY_MW_ALLOWED_HOSTS", "").split(",") if h],
        )
    ],
)
app = Starlette(routes=[Route("/", home), Mount("/llm", app=llm)])
