"""Help-desk errors. Like logistics', messages name a field, never a person's data."""

from __future__ import annotations

from core.errors import Conflict, InvalidInput, NotFound


class ArticleNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"article {ref} not found")


class ArticleVersionNotFound(NotFound):
    def __init__(self, article_id: int, version: int) -> None:
        super().__init__(f"article {article_id} has no version {version}")


class ArticleExists(Conflict):
    def __init__(self, slug: str, language: str) -> None:
        super().__init__(f"article {slug} ({language}) already exists; edit it instead")


class StaleVersion(Conflict):
    """An edit based on an older version than the current one (someone edited first)."""

    def __init__(self, article_id: int, current: int, based_on: int) -> None:
        super().__init__(
            f"article {article_id} is at version {current}; the edit was based on {based_on}",
            current_version=current,
        )


class ContactNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"contact {ref} not found")


class SurveyNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"survey {ref} not found")


class SurveyExists(Conflict):
    def __init__(self, month: str) -> None:
        super().__init__(f"the survey of {month} is already drawn")


class CallNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"survey call {ref} not found")


class CallClosed(Conflict):
    def __init__(self, call_id: int, status: str) -> None:
        super().__init__(f"survey call {call_id} is already {status}", current_status=status)


class NothingFound(NotFound):
    """A look-up that matched no laptop the caller may see."""

    def __init__(self) -> None:
        super().__init__("no laptop matches that identifier")


class BadMonth(InvalidInput):
    def __init__(self) -> None:
        super().__init__("month must be YYYY-MM")
