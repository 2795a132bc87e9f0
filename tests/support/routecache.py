"""Tests only: FastAPI's per-route set-up, done once per test process instead of once
per app.

FastAPI (0.165, pinned) prepares an included router's routes lazily, per app, on the
app's first request: each route's signature and dependencies are analysed again and a
pydantic validator is built for every parameter and response. For Masterline's ~200
routes that is about 0.2 s of CPU per app, and the tests build about 200 apps (one per
test that talks to the API: each test gets its own app on its own database), so this
was 40 s of the fast tier's 100 s of CPU (measured with a per-phase CPU clock; see
docs/development.md).

What is prepared depends only on the route and on how its router was included (prefix,
tags, dependencies...), which is the same for every app ``create_app`` builds, and on
the app only through ``dependency_overrides_provider``: the app whose
``dependency_overrides`` the route consults. Masterline overrides no dependency, so a
route prepared for one app serves every app alike. The cache is keyed on the route and
on everything in the inclusion except that provider; it is bypassed (the route prepared
as FastAPI does) for an app that has overrides, and it is never installed outside the
test process (``tests/conftest.py`` installs it).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from fastapi import routing

_build = routing._IncludedRouter._build_effective_context
_cache: dict[tuple[int, str], Any] = {}
_lock = threading.Lock()


def _has_overrides(include_context: Any) -> bool:
    provider = include_context.dependency_overrides_provider
    return bool(getattr(provider, "dependency_overrides", None))


def _cached_build(self: Any, route: Any) -> Any:
    context = self.include_context
    if _has_overrides(context):
        return _build(self, route)
    # The inclusion's repr names its router, dependencies and placeholders by identity
    # (module-level objects, the same for every app); the provider is left out.
    key = (id(route), repr(dataclasses.replace(context, dependency_overrides_provider=None)))
    with _lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] is route:
        return hit[1]
    built = _build(self, route)
    with _lock:
        _cache[key] = (route, built)  # the route is held, so its id is never reused
    return built


def install() -> None:
    """Share prepared routes between the apps of this process (idempotent)."""
    if not hasattr(routing._IncludedRouter, "_build_effective_context"):
        raise RuntimeError("FastAPI changed its route preparation: revisit routecache")
    # Patching FastAPI's method on purpose: every app of the process shares the cache.
    routing._IncludedRouter._build_effective_context = _cached_build  # type: ignore[method-assign]
