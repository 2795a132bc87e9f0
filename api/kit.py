"""What every router shares: the one page type of cursor-paginated lists.

(Authorization lives in ``api/deps.py``; "another company's object is a 404" is
``core.principal.Principal.visible``.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, Self, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list, and the cursor of the next one."""

    items: list[T]
    next_cursor: int | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )

    @classmethod
    def of(cls, items: Sequence[T], limit: int, *, key: Callable[[T], int] | None = None) -> Self:
        """A page of ``items`` (at most ``limit``): a full page points at its last item
        (``key``, by default its ``id``), a short one is the last."""
        cursor = None
        if items and len(items) == limit:
            cursor = key(items[-1]) if key is not None else int(items[-1].id)  # type: ignore[attr-defined]
        return cls(items=list(items), next_cursor=cursor)
