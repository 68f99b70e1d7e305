"""Errors a Bitrix24 portal answers with, each with its HTTP status."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A REST error: HTTP status plus the ``error``/``error_description`` envelope."""

    def __init__(self, status: int, code: str, description: str = "", **extra: Any) -> None:
        super().__init__(f"{code}: {description}")
        self.status = status
        self.code = code
        self.description = description
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body Bitrix24 sends for this error."""
        return {"error": self.code, "error_description": self.description, **self.extra}


def legacy_crm(description: str) -> ApiError:
    """Legacy ``crm.deal|company|contact.*`` errors: HTTP 400 with an empty code."""
    return ApiError(400, "", description)


def not_found_item() -> ApiError:
    """``crm.item.*`` for a missing element."""
    return ApiError(400, "NOT_FOUND", "Element not found")


def task_core(description: str) -> ApiError:
    """``tasks.task.*`` core errors carry an HTML line break at the end."""
    return ApiError(400, "ERROR_CORE", f"{description}<br>")


def method_not_found(method: str) -> ApiError:
    """An unknown REST method."""
    return ApiError(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")


def access_denied(description: str = "Access denied!") -> ApiError:
    """A permission failure."""
    return ApiError(403, "ACCESS_DENIED", description)


def argument_null(name: str) -> ApiError:
    """A missing required parameter, in the style of Bitrix24 core ``ArgumentNullException``."""
    return ApiError(400, "ERROR_ARGUMENT", f"Argument '{name}' is null or empty", argument=name)
