"""RFC 9110 / RFC 9112 grammar as precompiled patterns.

The head of a request is decoded once as ISO-8859-1 (every octet maps to one
code point, so nothing is lost) and every pattern here runs on that ``str``.
Patterns are used with ``fullmatch`` so that they validate a whole element:
nothing is trimmed with ``str.strip()`` (which treats ``\\x0b``, ``\\x0c``,
``\\x1c`` and ``\\x85`` as whitespace) and nothing is split with
``splitlines()`` (which splits on them).
"""

from __future__ import annotations

import re

# RFC 9110 §5.6.2:
#   token = 1*tchar
#   tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
#           "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
TOKEN_RE = re.compile(TOKEN)

# RFC 9112 §5 and RFC 9110 §5.5:
#   field-line    = field-name ":" OWS field-value OWS
#   field-value   = *field-content
#   field-content = field-vchar [ 1*( SP / HTAB / field-vchar ) field-vchar ]
#   field-vchar   = VCHAR / obs-text          ; %x21-7E / %x80-FF
# CR, LF, NUL, DEL and other controls are in neither, so they are refused.
# A field value with its trailing OWS is exactly a run of VCHAR, obs-text, SP
# and HTAB: the pattern takes that run in one greedy pass (no backtracking to
# find where the value ends), and the parser trims the trailing SP/HTAB.
_FIELD_TEXT = r"[^\x00-\x08\x0a-\x1f\x7f]*"
_FIELD_LINE = rf"({TOKEN}):[ \t]*({_FIELD_TEXT})\r\n"
FIELD_LINE_RE = re.compile(_FIELD_LINE)
# A whole header block (every line ending in CRLF) in one match; the common
# case validates all fields with one call into the regex engine.
FIELD_BLOCK_RE = re.compile(rf"(?:{_FIELD_LINE})*")

# RFC 9112 §3: request-line = method SP request-target SP HTTP-version
#              HTTP-version = HTTP-name "/" DIGIT "." DIGIT
# The target is checked loosely here (visible ASCII) and by form below.
REQUEST_LINE_RE = re.compile(rf"({TOKEN}) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
# A whole head (request line, then field lines, each ending in CRLF) in one
# fullmatch: the common case validates everything in one call.
HEAD_RE = re.compile(rf"({TOKEN}) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])\r\n((?:{_FIELD_LINE})*)")
# Something that is a request line but names a version we do not speak
# (HTTP/2.0, HTTP/1.10, HTTP/3): answered 505, not 400.
OTHER_VERSION_RE = re.compile(rf"{TOKEN} [\x21-\x7e]+ HTTP/[0-9]+(?:\.[0-9]+)?")

# RFC 9112 §3.2.2: absolute-form = absolute-URI; we need the scheme and
# authority only to find where the path begins.
ABSOLUTE_FORM_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://([^/?#]*)")

# RFC 9110 §8.6: Content-Length = 1*DIGIT. ASCII digits only ("\xb2", a
# superscript two, is a digit to str.isdigit()), and at most 18 of them, which
# no real body reaches and which keeps int() away from absurd inputs.
CONTENT_LENGTH_RE = re.compile(r"[0-9]{1,18}")

# RFC 9112 §7.1: chunk-size = 1*HEXDIG, then chunk-ext, then CRLF.
#   chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
#   chunk-ext-val = token / quoted-string
# Extensions are validated and ignored. 16 hex digits bound the size.
_QUOTED_STRING = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t\x20-\x7e\x80-\xff])*"'
_CHUNK_EXT = rf"(?:[ \t]*;[ \t]*{TOKEN}(?:[ \t]*=[ \t]*(?:{TOKEN}|{_QUOTED_STRING}))?)*"
CHUNK_LINE_RE = re.compile(rf"([0-9A-Fa-f]{{1,16}}){_CHUNK_EXT}")

# RFC 9110 §7.2: Host = uri-host [ ":" port ]; uri-host is an IP literal in
# brackets, or a reg-name / IPv4 address (unreserved / pct-encoded / sub-delims).
HOST_RE = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]*)?")
