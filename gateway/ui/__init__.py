"""The web dashboard at ``/ui``: static pages over A2A and a small read-only JSON API (``gateway.ui.api``)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from gateway.ui.api import DashboardApi, UiHost
from gateway.ui.pages import page_routes

__all__ = ["UiHost", "ui_routes"]


def ui_routes(host: UiHost) -> list[BaseRoute]:
    """The dashboard's routes: its API first, then its pages (before the agents' own routes)."""
    return [*DashboardApi(host).routes(), *page_routes(host.agents)]
