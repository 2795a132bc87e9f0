"""Identifiers as scanned: one normal form for serials and asset tags."""

from __future__ import annotations


def normalize_code(code: str) -> str:
    """Serials and asset tags compare upper-case, without surrounding blanks."""
    return code.strip().upper()
