"""Django (ASGI) host with the gateway in front:

    uvicorn examples.django_asgi:application

Django refuses lifespan; the gateway still serves, and its upstream client lives as long as
the process.
"""

from __future__ import annotations

import os

import django
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path


def ping(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"django": "pong"})


if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="example-only-not-secret",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        MIDDLEWARE=[],
    )
    django.setup()

urlpatterns = [path("ping", ping)]

from portkey_mw import PortkeyMiddleware  # noqa: E402 - after Django is configured

application = PortkeyMiddleware(
    get_asgi_application(),
    allowed_custom_hosts=[
        h for h in os.environ.get("PORTKEY_MW_ALLOWED_HOSTS", "").split(",") if h
    ],
)
