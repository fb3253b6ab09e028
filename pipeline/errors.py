"""The one error-message helper: every argument check in the pipeline raises through `invalid_argument`.

Keras-style messages name the argument, what was expected and what was received, so a user can fix the
call without reading the code: "Invalid value for argument `n_boot`. Expected a positive int. Received: 0".
"""
from __future__ import annotations

__all__ = ["invalid_argument"]


def invalid_argument(name: str, expected: str, received: object) -> ValueError:
    """A ValueError naming argument `name`, what was `expected` and what was `received` (shown with str();
    pass `repr(x)` to quote a string)."""
    return ValueError(f"Invalid value for argument `{name}`. Expected {expected}. Received: {received}")
