"""Imports every domain's tables so ``SQLModel.metadata`` is complete (Alembic, tests)."""

from __future__ import annotations

import importlib

from sqlalchemy import MetaData
from sqlmodel import SQLModel

MODEL_MODULES = (
    "inventory.models",
    "api.models",
    "images.models",
    "provisioning.runs.models",
    "logistics.models",
    "console.models",
    "forecast.models",
    "helpdesk.models",
    "boot.registration.models",
    "boot.hardware.models",
)


def load_all_models() -> MetaData:
    for name in MODEL_MODULES:
        importlib.import_module(name)
    return SQLModel.metadata
