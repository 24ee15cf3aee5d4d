"""RFC 9110 / RFC 9112 grammar as precompiled patterns.

The head of a request is decoded once as ISO-8859-1 (every octet maps to one
code point, so nothing is lost) and the patterns here run on that ``str``;
only the chunk-size line pattern runs on bytes, the same characters encoded.
Patterns are used with ``fullmatch`` so that they validate a whole element:
nothing is trimmed with ``str.strip()`` (which treats ``\\x0b``, ``\\x0c``,
``\\x1c`` and ``\\x85`` as whitespace) and nothing is split with
``splitlines()`` (which splits on them).

Every pattern here sees client bytes, so every pattern must match them one
way only: wherever two parts of a pattern meet, the character classes on the
two sides of the seam are disjoint, so the engine never has a second way to
cut the input to try when a later part fails. Such a pattern runs in time
linear in its input, whatever the input. The comment beside each pattern
says where its seams are and why they cannot be cut two ways. Patterns run
on one line at a time (a field line, a chunk-size line); nothing here spans
lines, so a failure late in a head cannot send the engine back into an
earlier line.
"""

from __future__ import annotations

import re

# RFC 9110 §5.6.2:
#   token = 1*tchar
#   tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
#           "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
_TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# Linear: one character class, repeated; nothing to cut two ways.
TOKEN_RE = re.compile(TOKEN)
# The octets that may begin a request line: a method is a token (RFC 9112 §3),
# and CR begins one of the empty lines a client may send first (§2.2).
# Indexed by octet value: REQUEST_START[octet] is 1 or 0.
REQUEST_START = bytes(1 if chr(octet) in _TCHARS or octet == 13 else 0 for octet in range(256))

# RFC 9112 §5 and RFC 9110 §5.5:
#   field-line    = field-name ":" OWS field-value OWS
#   field-value   = *field-content
#   field-content = field-vchar [ 1*( SP / HTAB / field-vchar ) field-vchar ]
#   field-vchar   = VCHAR / obs-text          ; %x21-7E / %x80-FF
# CR, LF, NUL, DEL and other controls are in neither, so they are refused.
# A field value with its trailing OWS is exactly a field-vchar followed by a
# run of VCHAR, obs-text, SP and HTAB: the pattern takes that run in one
# greedy pass, and the parser trims the trailing SP/HTAB. The value must
# begin with a field-vchar, so the leading OWS and the value can never both
# claim a space: the seam between them is fixed by the first visible octet.
_FIELD_VCHAR = r"[\x21-\x7e\x80-\xff]"
_FIELD_TEXT = r"[^\x00-\x08\x0a-\x1f\x7f]*"
# Linear: the name stops at ":" (not a tchar), OWS stops at the first
# field-vchar (not SP/HTAB), and the value runs to the end: one way to match
# (the empty alternative matches only an empty value).
FIELD_LINE_RE = re.compile(rf"({TOKEN}):[ \t]*({_FIELD_VCHAR}{_FIELD_TEXT}|)")

# RFC 9112 §3: request-line = method SP request-target SP HTTP-version
#              HTTP-version = HTTP-name "/" DIGIT "." DIGIT
# The target is checked loosely here (visible ASCII) and by form below.
# Linear: neither the method (a token) nor the target (VCHAR) holds a SP,
# so each SP can only be the separator.
REQUEST_LINE_RE = re.compile(rf"({TOKEN}) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
# The whole head at once (without its final CRLF CRLF): the request line, then
# each field line after the CRLF that ends the one before; group 5 is the
# field lines, each with the CRLF before it. It matches exactly the heads
# whose every line matches REQUEST_LINE_RE or FIELD_LINE_RE: one C call
# instead of one a line. The parser tries it on heads too small for any line
# to reach a limit; when it fails, the lines are matched one by one, which
# says which line is wrong.
# Linear: the request line as REQUEST_LINE_RE; each field line begins with a
# CR, which neither the version's digit nor a field value (_FIELD_TEXT holds
# no CR or LF) can take, so each line ends at one place, and within a line
# the seams are FIELD_LINE_RE's.
WHOLE_HEAD_RE = re.compile(
    rf"({TOKEN}) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])"
    rf"((?:\r\n{TOKEN}:[ \t]*(?:{_FIELD_VCHAR}{_FIELD_TEXT}|))*)"
)
# In the field lines WHOLE_HEAD_RE has matched (each after its CRLF), the fields
# that frame the message, any case: (name, value) pairs in order, the value's
# leading OWS left out (its trailing OWS is trimmed by the parser). One C call
# finds all the parser must look at; the other fields are split only if asked for.
# Linear: a match can start only at a CRLF; the names are literals ended by
# ":", so at most five are tried there, each to its length; the value begins
# with an octet that OWS cannot take and runs to the next CR (lines hold no
# CR or LF): one way to cut each line, and no match spans a line.
FRAMING_FIELDS_RE = re.compile(
    r"\r\n(host|content-length|transfer-encoding|connection|expect):[ \t]*([^\r \t][^\r]*|)",
    re.IGNORECASE,
)
# Something that is a request line but names a version we do not speak
# (HTTP/2.0, HTTP/1.10, HTTP/3): answered 505, not 400.
# Linear: as REQUEST_LINE_RE; the digit runs are split by ".", not a digit.
OTHER_VERSION_RE = re.compile(rf"{TOKEN} [\x21-\x7e]+ HTTP/[0-9]+(?:\.[0-9]+)?")

# RFC 3986 §3.2.2, RFC 9110 §4.2.1 and §7.2: the authority of an http URI and
# the Host field value are uri-host [ ":" port ], where uri-host is an IP
# literal in brackets or a reg-name / IPv4 address:
#   reg-name    = *( unreserved / pct-encoded / sub-delims )
#   pct-encoded = "%" HEXDIG HEXDIG
# No userinfo ("user@"): RFC 9110 §4.2.4 forbids it in http URIs, and "@" is
# in neither part. The IP literal is checked loosely (hex digits, ":" and ".").
# reg-name is written as runs of plain characters between pct-encoded
# triplets, so that the common case (no "%") is one run of one class.
_REG_CHAR = r"[A-Za-z0-9\-._~!$&'()*+,;=]"
_REG_NAME = rf"{_REG_CHAR}*(?:%[0-9A-Fa-f]{{2}}{_REG_CHAR}*)*"
_URI_HOST = rf"(?:\[[0-9A-Fa-f:.]+\]|{_REG_NAME})"
# Linear: "%" is not in the reg-name class, so a "%" can only start a
# pct-encoded triplet; ":" is in neither host form, so it can only start the
# port; "[" and "]" are in no other part.
HOST_RE = re.compile(rf"{_URI_HOST}(?::[0-9]*)?")

# RFC 9112 §3.2.2: absolute-form = absolute-URI. We need the scheme and the
# authority: the authority is validated with HOST_RE, the path begins after.
# Linear: the scheme class holds no ":", and the authority runs to the first
# "/", "?" or "#", which it cannot contain: each seam is fixed.
ABSOLUTE_FORM_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://([^/?#]*)")

# RFC 9110 §8.6: Content-Length = 1*DIGIT. ASCII digits only ("\xb2", a
# superscript two, is a digit to str.isdigit()), and at most 18 of them, which
# no real body reaches and which keeps int() away from absurd inputs.
# Linear: one bounded run of one class.
CONTENT_LENGTH_RE = re.compile(r"[0-9]{1,18}")

# RFC 9112 §7.1: chunk-size = 1*HEXDIG, then chunk-ext, then CRLF.
#   chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
#   chunk-ext-val = token / quoted-string
# Extensions are validated and ignored. 16 hex digits bound the size.
# Inside a quoted-string, a backslash can only begin a quoted-pair (the plain
# class excludes it) and a '"' can only end the string; it is written as runs
# of plain characters between quoted-pairs.
_QDTEXT = r'[^"\\\x00-\x08\x0a-\x1f\x7f]*'
_QUOTED_STRING = rf'"{_QDTEXT}(?:\\[\t\x20-\x7e\x80-\xff]{_QDTEXT})*"'
_CHUNK_EXT = rf"(?:[ \t]*;[ \t]*{TOKEN}(?:[ \t]*=[ \t]*(?:{TOKEN}|{_QUOTED_STRING}))?)*"
# Linear: the size stops at the first non-hex octet; each extension begins at
# a ";" and its value at a "=", neither of which a token, BWS or hex digit
# can take; the whitespace before a ";" or "=" can only be BWS; a token value
# and a quoted one differ in their first octet. One way to cut every line.
# This one pattern runs on the bytes of the line (chunk lines are not decoded).
CHUNK_LINE_RE = re.compile(rf"([0-9A-Fa-f]{{1,16}}){_CHUNK_EXT}".encode("latin-1"))
