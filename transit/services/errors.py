"""What a service refuses, each standing for one answer of the API (the route maps
them in :func:`transit.api.errors.answering`)."""

from __future__ import annotations

from typing import Any

from transit.lifecycle import Refused

__all__ = ["Forbidden", "Invalid", "NotFound", "Refused"]


class NotFound(LookupError):
    """Nothing the caller may see has this name (404: it learns nothing of the rest)."""


class Forbidden(PermissionError):
    """The caller sees it but may not do this (403), the message saying who may."""


class Invalid(ValueError):
    """The input does not hold together (422); ``problems`` each name their field in
    FastAPI's shape (``loc``, ``msg``, ``type``)."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(p["msg"]) for p in problems))
        self.problems = problems

    @classmethod
    def field(cls, field: str, msg: str, index: int | None = None) -> Invalid:
        """One problem with a body field (and the index in a list field)."""
        return cls([problem(field, msg, index)])


def problem(field: str, msg: str, index: int | None = None) -> dict[str, Any]:
    """A problem with a body field, in FastAPI's 422 shape."""
    loc: list[str | int] = ["body", field] if index is None else ["body", field, index]
    return {"loc": loc, "msg": msg, "type": "value_error"}
