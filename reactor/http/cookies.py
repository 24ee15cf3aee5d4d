"""Cookies: the ``Cookie`` request header read, ``Set-Cookie`` fields written (RFC 6265).

Reading splits the header on ``;`` and each pair on its first ``=``: two
``str`` methods that look at each character once, so the cost is linear in
the header's length. :class:`http.cookies.SimpleCookie` is not used: its
regex accepts far more than RFC 6265 allows, it drops every cookie after one
it cannot parse, and it has needed fixes for quadratic time on crafted
values (CVE-2024-7592, runs of backslashes).
"""

from __future__ import annotations

import re
from datetime import datetime

from .grammar import TOKEN_RE

__all__ = ["delete_cookie_header", "parse_cookie_header", "set_cookie_header"]

# RFC 6265 §4.1.1 cookie-octet: US-ASCII but controls, space, DQUOTE, comma,
# semicolon and backslash. One character class under fullmatch: each
# character is tested once, nothing is retried, so linear time.
_COOKIE_OCTETS = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
# RFC 6265 §4.1.1 path-value and domain: any CHAR but controls and ";". One
# character class under fullmatch, so linear time as above.
_ATTRIBUTE_VALUE = re.compile(r"[\x20-\x3a\x3c-\x7e]*")
_SAMESITE = {"strict": "Strict", "lax": "Lax", "none": "None"}


def parse_cookie_header(header: str) -> dict[str, str]:
    """``"a=1; b=2"`` as ``{"a": "1", "b": "2"}``.

    A pair without ``=`` or with an empty name is skipped, the next pairs are
    kept; a value in double quotes loses them; the first of two cookies with
    one name wins (RFC 6265 §5.4 sends the most specific path first). Values
    are not percent-decoded.
    """
    cookies: dict[str, str] = {}
    for pair in header.split(";"):
        name, eq, value = pair.partition("=")
        name = name.strip(" \t")
        if not eq or not name:
            continue
        value = value.strip(" \t")
        if len(value) >= 2 and value[0] == '"' == value[-1]:
            value = value[1:-1]
        cookies.setdefault(name, value)
    return cookies


def set_cookie_header(
    name: str,
    value: str,
    *,
    max_age: int | None = None,
    expires: datetime | float | None = None,
    path: str | None = "/",
    domain: str | None = None,
    secure: bool = False,
    httponly: bool = False,
    samesite: str | None = "Lax",
) -> str:
    """The value of one ``Set-Cookie`` field (RFC 6265 §4.1).

    Raises:
        ValueError: a name that is not a token, a value that is not
            cookie-octets, a path or domain with a control character or
            ``;``, a ``samesite`` other than "Strict", "Lax", "None" or None, or
            ``samesite="None"`` without ``secure`` (browsers drop it).
    """
    if not isinstance(name, str) or TOKEN_RE.fullmatch(name) is None:
        raise ValueError(f"a cookie name is a token, not {name!r}")
    if not isinstance(value, str) or _COOKIE_OCTETS.fullmatch(value) is None:
        raise ValueError(
            "a cookie value is cookie-octets (no space, DQUOTE, comma, semicolon,"
            f" backslash or control), not {value[:40]!r}"
        )
    parts = [f"{name}={value}"]
    if max_age is not None:
        if not isinstance(max_age, int) or isinstance(max_age, bool):
            raise ValueError(f"max_age is an int of seconds, not {max_age!r}")
        parts.append(f"Max-Age={max_age}")
    if expires is not None:
        if isinstance(expires, datetime):
            if expires.tzinfo is None:
                raise ValueError("expires needs a timezone (an aware datetime)")
            when = expires.timestamp()
        else:
            when = float(expires)
        from .response import imf_fixdate  # noqa: PLC0415 (response imports this module)

        parts.append(f"Expires={imf_fixdate(when)}")
    for attribute, text in (("Domain", domain), ("Path", path)):
        if text is not None:
            if not isinstance(text, str) or _ATTRIBUTE_VALUE.fullmatch(text) is None:
                raise ValueError(f"a cookie {attribute.lower()} has no control character or ';': {text!r}")
            parts.append(f"{attribute}={text}")
    if secure:
        parts.append("Secure")
    if httponly:
        parts.append("HttpOnly")
    if samesite is not None:
        spelled = _SAMESITE.get(samesite.lower()) if isinstance(samesite, str) else None
        if spelled is None:
            raise ValueError(f"samesite is 'Strict', 'Lax', 'None' or None, not {samesite!r}")
        if spelled == "None" and not secure:
            raise ValueError("samesite='None' needs secure=True (browsers refuse it otherwise)")
        parts.append(f"SameSite={spelled}")
    return "; ".join(parts)


def delete_cookie_header(name: str, *, path: str | None = "/", domain: str | None = None) -> str:
    """A ``Set-Cookie`` value that makes the client drop cookie ``name``
    (empty, ``Max-Age=0`` and an ``Expires`` in 1970 for old clients)."""
    return set_cookie_header(name, "", max_age=0, expires=0, path=path, domain=domain, samesite=None)
