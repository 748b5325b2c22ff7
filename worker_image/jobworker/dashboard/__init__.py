"""The web dashboard: ``jobworker dashboard``, or ``create_app(DashboardSettings(...))`` to mount it yourself."""

from __future__ import annotations

from jobworker.dashboard.app import DashboardSettings, create_app

__all__ = ["DashboardSettings", "create_app"]
