"""A read-only multi-dict of names and values: query strings and form fields.

``parse_qsl`` from :mod:`urllib.parse` splits on ``&`` and ``=`` and
percent-decodes each piece once, so a query string costs time linear in its
length; the number of fields is checked (by counting ``&``) before any is
decoded, as Django's ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Generic, TypeVar, overload
from urllib.parse import parse_qsl

from .errors import HTTPError

__all__ = ["MAX_FIELDS", "MultiDict", "parse_urlencoded"]

#: Fields in one query string or form at most (Django's default too).
MAX_FIELDS = 1000

V = TypeVar("V")
D = TypeVar("D")


class MultiDict(Mapping[str, V], Generic[V]):
    """Names mapped to values, each name possibly repeated, read-only.

    ``md["n"]`` and ``md.get("n", default)`` give the first value of a name;
    ``md.getall("n")`` gives every value in arrival order. Iterating, ``len``
    and ``in`` see each name once.
    """

    __slots__ = ("_values", "_pairs")

    def __init__(self, pairs: Iterable[tuple[str, V]] = ()) -> None:
        self._pairs = list(pairs)
        values: dict[str, list[V]] = {}
        for name, value in self._pairs:
            found = values.get(name)
            if found is None:
                values[name] = [value]
            else:
                found.append(value)
        self._values = values

    def __getitem__(self, name: str) -> V:
        return self._values[name][0]

    @overload
    def get(self, name: str, /) -> V | None: ...
    @overload
    def get(self, name: str, /, default: V | D) -> V | D: ...
    def get(self, name: str, /, default: object = None) -> object:
        """The first value of ``name``, or ``default``."""
        values = self._values.get(name)
        return default if values is None else values[0]

    def getall(self, name: str) -> list[V]:
        """Every value of ``name`` in arrival order (``[]`` when absent)."""
        return list(self._values.get(name, ()))

    def multi_items(self) -> list[tuple[str, V]]:
        """Every ``(name, value)`` pair, repeats included, in arrival order."""
        return list(self._pairs)

    def to_dict(self) -> dict[str, list[V]]:
        """``{name: [values]}``, a plain dict (for JSON, say)."""
        return {name: list(values) for name, values in self._values.items()}

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._pairs!r})"


def parse_urlencoded(text: str, *, max_fields: int | None = MAX_FIELDS, status: int = 400) -> MultiDict[str]:
    """``a=1&b=&a=2`` as a :class:`MultiDict`: percent-decoded as UTF-8, ``+`` as
    a space, blank values kept, a name without ``=`` given ``""``.

    Raises:
        HTTPError: ``status`` when there are more than ``max_fields`` fields.
    """
    if not text:
        return MultiDict()
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=max_fields)
    except ValueError:
        raise HTTPError(status, f"more than {max_fields} fields") from None
    return MultiDict(pairs)
