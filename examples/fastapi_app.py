"""FastAPI host app with the gateway on POST /v1/completions.

    uvicorn examples.fastapi_app:app

Keys come from the client (Authorization: Bearer ...), or from the virtual key "openai-prod"
whose key is read from OPENAI_API_KEY.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from portkey_mw import PortkeyMiddleware

app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}  # the host's own routes are untouched


app.add_middleware(
    PortkeyMiddleware,
    virtual_keys={
        "openai-prod": {"provider": "openai", "api_key": os.environ.get("OPENAI_API_KEY", "")}
    },
    allowed_custom_hosts=[
        h for h in os.environ.get("PORTKEY_MW_ALLOWED_HOSTS", "").split(",") if h
    ],
)
