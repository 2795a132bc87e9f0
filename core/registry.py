"""Imports every domain's tables so ``SQLModel.metadata`` is complete (Alembic, tests)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import MetaData
from sqlmodel import SQLModel

MODEL_MODULES = (
    "inventory.models",
    "api.models",
    "images.models",
    "provisioning.models",
    "logistics.models",
    "helpdesk.models",
)


def load_all_models() -> MetaData:
    for name in MODEL_MODULES:
        importlib.import_module(name)
    return SQLModel.metadata


# Hooks: a domain lower in the dependency order (logistics) runs steps that a domain
# above it (helpdesk) adds, without importing it.
Hook = Callable[..., Any]
HOOK_MODULES = ("helpdesk.retention",)
"""Modules that register hooks when imported (``register_hook``)."""
_hooks: dict[str, dict[str, Hook]] = {}


def register_hook(event: str, name: str, fn: Hook) -> None:
    """Add (or replace, by ``name``) a step run on ``event``."""
    _hooks.setdefault(event, {})[name] = fn


def hooks(event: str) -> list[tuple[str, Hook]]:
    """The steps registered for ``event``, by name, every hook module loaded first."""
    for name in HOOK_MODULES:
        importlib.import_module(name)
    return sorted(_hooks.get(event, {}).items())
