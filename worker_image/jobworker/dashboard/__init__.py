"""The web dashboard: ``jobworker dashboard``, or mount it yourself: ``create_app(DashboardSettings(...))`` in
aiohttp, ``asgi_app(DashboardSettings(...))`` in any ASGI framework or server."""

from __future__ import annotations

from jobworker.dashboard.app import DashboardSettings, create_app
from jobworker.dashboard.asgi import asgi_app

__all__ = ["DashboardSettings", "asgi_app", "create_app"]
