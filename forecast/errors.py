"""The forecast's errors (rendered by the API's and the CLI's one handler each)."""

from __future__ import annotations

from core.errors import Conflict, InvalidInput, NotFound


class NothingToForecast(Conflict):
    """No site, or no laptop in the wave."""


class DeliveryNotFound(NotFound):
    def __init__(self, delivery_id: int) -> None:
        super().__init__(f"delivery {delivery_id} not found")


class SiteNotFound(NotFound):
    def __init__(self, site: int | str) -> None:
        super().__init__(f"site {site} not found")


class BadQuestion(InvalidInput):
    """A what-if or capacity question that cannot be answered as asked."""
