"""Symbolic shapes for validation without torch.

A :class:`Shape` is a tuple of dimensions, each an ``int`` or a symbol (``"B"``, ``"T"``).
A node's ``infer(x, scope)`` returns its output shape or raises :class:`ShapeError`
naming the offending field.
"""

from __future__ import annotations

__all__ = ["UNKNOWN", "Dim", "Shape", "ShapeError", "expect_last"]

Dim = int | str

#: The dim a node that failed to infer leaves behind: it matches any width, so the nodes
#: after it are checked against their own declared widths and independent errors still show.
UNKNOWN: Dim = "?"


class Shape(tuple):
    """An immutable tuple of dims; ``Shape("B", "T", 512)``."""

    def __new__(cls, *dims: Dim) -> Shape:
        return super().__new__(cls, dims)

    @property
    def last(self) -> Dim:
        last: Dim = self[-1]
        return last

    @property
    def rank(self) -> int:
        return len(self)

    def with_last(self, dim: Dim) -> Shape:
        return Shape(*self[:-1], dim)

    def agrees(self, other: tuple[Dim, ...]) -> bool:
        """Same rank, and every dim equal unless one of the two is :data:`UNKNOWN`."""
        return len(self) == len(other) and all(
            a == b or UNKNOWN in (a, b) for a, b in zip(self, other, strict=True))

    def __str__(self) -> str:
        return "(" + ", ".join(str(d) for d in self) + ")"

    def __repr__(self) -> str:
        return f"Shape{self}"


class ShapeError(Exception):
    """A node cannot accept its input shape, or its own fields disagree."""

    def __init__(self, message: str, *, field: str | None = None, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.hint = hint


def expect_last(x: Shape, width: int, field: str) -> Shape:
    """``x`` with its declared feature ``width``; :class:`ShapeError` when ``x``'s known width differs.

    A shape-preserving layer ends its ``infer`` with ``return expect_last(x, self.d_model,
    "d_model")``: after an unknown width (a failed node above) it outputs its declared one.
    """
    if not x:
        raise ShapeError("expected an input with a feature dimension, got a scalar", field=field)
    if isinstance(x.last, int) and x.last != width:
        raise ShapeError(
            f"input width is {x.last} but {field} is {width}",
            field=field,
            hint=f"set {field}: {x.last}, or change the layer before it to output {width}",
        )
    return x.with_last(width)
