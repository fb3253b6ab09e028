"""The one error-message helper: every argument check in the pipeline raises through `invalid_argument`.

Keras-style messages name the argument, what was expected and what was received, so a user can fix the
call without reading the code: "Invalid value for argument `n_boot`. Expected a positive int. Received: 0".
"""

from __future__ import annotations

from typing import TypeVar, overload

__all__ = ["invalid_argument"]

E = TypeVar("E", bound=Exception)


@overload
def invalid_argument(name: str, expected: str, received: object) -> ValueError: ...


@overload
def invalid_argument(name: str, expected: str, received: object, *, error: type[E]) -> E: ...


def invalid_argument(name: str, expected: str, received: object, *, error: type[Exception] = ValueError) -> Exception:
    """The exception to raise (ValueError unless `error` says otherwise) naming argument `name`, what was
    `expected` and what was `received` (shown with str(); pass `repr(x)` to quote a string)."""
    return error(f"Invalid value for argument `{name}`. Expected {expected}. Received: {received}")
