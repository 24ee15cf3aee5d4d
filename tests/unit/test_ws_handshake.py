"""The opening handshake, sans-IO: requests parsed from bytes, answers checked."""

from __future__ import annotations

import gc

import pytest

from reactor import Config
from reactor.http.parser import RequestParser
from reactor.http.request import Headers, Request
from reactor.websocket.handshake import HandshakeError, accept_head, accept_key, check, parse_origins

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example


def parse(head: str) -> Request:
    parser = RequestParser(Config())
    parser.receive_data(head.replace("\n", "\r\n").encode() + b"\r\n")
    request = parser.next_event()
    assert isinstance(request, Request)
    return request


def upgrade(*extra: str, version: str = "HTTP/1.1", method: str = "GET", key: str = KEY) -> Request:
    lines = [
        f"{method} /chat {version}",
        "Host: server.example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *extra,
    ]
    return parse("\n".join(lines) + "\n")


def refused(request: Request, **options: object) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        check(request, **options)  # type: ignore[arg-type]
    return info.value


def test_rfc_6455_example_key() -> None:
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    handshake = check(upgrade())
    assert handshake.accept == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert accept_head(handshake) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )


def test_tokens_are_case_insensitive_and_listed() -> None:
    request = parse(
        f"GET / HTTP/1.1\nHost: h\nUpgrade: h2c, WebSocket\nConnection: keep-alive, UPGRADE\n"
        f"Sec-WebSocket-Key: {KEY}\nSec-WebSocket-Version: 13\n"
    )
    assert check(request).accept == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (upgrade(method="POST"), 405),
        (upgrade(method="HEAD"), 405),
        (upgrade(version="HTTP/1.0"), 400),
        (parse("GET / HTTP/1.1\nHost: h\n"), 426),
        (
            parse(f"GET / HTTP/1.1\nHost: h\nUpgrade: h2c\nConnection: upgrade\nSec-WebSocket-Key: {KEY}\n"),
            400,
        ),
        (parse(f"GET / HTTP/1.1\nHost: h\nUpgrade: websocket\nSec-WebSocket-Key: {KEY}\n"), 400),
        (
            parse(
                f"GET / HTTP/1.1\nHost: h\nUpgrade: websocket\nConnection: upgrade\n"
                f"Sec-WebSocket-Key: {KEY}\n"
            ),
            426,
        ),
        (upgrade(key="dGhlIHNhbXBsZSBub25jZQ"), 400),  # no padding
        (upgrade(key="dGhlIHNhbXBsZSBub25jZQ=!"), 400),
        (upgrade(key="AAAAAAAAAAAAAAAAAAAAAAAAAAAA"), 400),  # 21 bytes
        (upgrade(key="dGhlIHNhbXBsZSBub25jZR=="), 400),  # not canonical base64
    ],
)
def test_refusals(request_: Request, status: int) -> None:
    error = refused(request_)
    assert error.status == status, error.detail
    if status == 426:
        assert ("Sec-WebSocket-Version", "13") in error.headers
        assert ("Upgrade", "websocket") in error.headers


def test_version_other_than_13() -> None:
    request = parse(
        f"GET / HTTP/1.1\nHost: h\nUpgrade: websocket\nConnection: upgrade\nSec-WebSocket-Key: {KEY}\n"
        "Sec-WebSocket-Version: 8\n"
    )
    assert refused(request).status == 426


def test_two_keys_are_refused() -> None:
    assert refused(upgrade(f"Sec-WebSocket-Key: {KEY}")).status == 400


def test_origin_allow_list() -> None:
    origins = parse_origins("https://a.example, HTTPS://B.example")
    assert origins == frozenset({"https://a.example", "https://b.example"})
    assert check(upgrade("Origin: https://b.example"), origins=origins).origin == "https://b.example"
    assert refused(upgrade("Origin: https://evil.example"), origins=origins).status == 403
    assert refused(upgrade(), origins=origins).status == 403  # no Origin with an allow-list
    assert check(upgrade("Origin: https://evil.example")).origin == "https://evil.example"
    assert parse_origins("") is None and parse_origins(None) is None


def test_subprotocol_is_the_servers_first_choice_among_the_offered() -> None:
    request = upgrade("Sec-WebSocket-Protocol: chat, superchat")
    assert check(request, subprotocols=["superchat", "chat"]).subprotocol == "superchat"
    assert check(request, subprotocols=["other"]).subprotocol is None
    assert check(request).subprotocol is None
    assert check(upgrade("Sec-WebSocket-Protocol: Chat"), subprotocols=["chat"]).subprotocol is None
    head = accept_head(check(request, subprotocols=["chat"]))
    assert b"\r\nSec-WebSocket-Protocol: chat\r\n" in head


def test_extensions_go_to_the_negotiation() -> None:
    offers = []

    def negotiate(offer: str) -> tuple[str, object] | None:
        offers.append(offer)
        return ("permessage-deflate", "state") if "permessage-deflate" in offer else None

    request = upgrade("Sec-WebSocket-Extensions: x-foo", "Sec-WebSocket-Extensions: permessage-deflate")
    handshake = check(request, negotiate=negotiate)
    assert offers == ["x-foo, permessage-deflate"]
    assert handshake.deflate == "state"
    assert b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n" in accept_head(handshake)
    declined = check(upgrade("Sec-WebSocket-Extensions: x-foo"), negotiate=negotiate)
    assert declined.deflate is None and b"Extensions" not in accept_head(declined)
    assert check(upgrade(), negotiate=negotiate).deflate is None and len(offers) == 2


# -- what the socket keeps of its request: ws.request ------------------------------------


def test_the_kept_request_reads_as_the_upgrade_request_without_the_handshake_fields() -> None:
    from reactor.websocket.protocol import HandshakeRequest
    from reactor.websocket.route import WebSocketRoute, _Starter

    request = upgrade("Origin: http://server.example.com", "Cookie: a=1; b=2")
    request.params = {"room": "lobby"}
    request.client = ("127.0.0.1", 5000)
    request.target = request.path = "/chat"
    request.query_string = "n=3&n=4"
    answer = WebSocketRoute(object)(request)
    assert isinstance(answer.start, _Starter)

    class Connection:  # what the WebSocket reads of the HTTP connection at once
        loop = type("Loop", (), {"now": 0.0})()
        config = Config()

        def connection_lost(self, exc: Exception | None) -> None:
            pass

    connection = Connection()
    ws = answer.start(connection)  # type: ignore[arg-type]
    kept = ws.request
    # What every idle socket pays for its WebSocket object: its slots and no
    # dict; the settings are read through the HTTP connection, not kept in a
    # slot of their own. (Counted in slots, not bytes: sys.getsizeof counts
    # the GC header differently from one CPython to the next.)
    assert ws.config is connection.config
    assert "config" not in type(ws).__slots__
    assert not hasattr(ws, "__dict__")
    assert len(type(ws).__slots__) <= 18
    assert isinstance(kept, HandshakeRequest)
    # An idle socket pays for no Headers object until a handler reads the fields.
    assert not any(isinstance(o, Headers) for o in gc.get_referents(kept))
    assert (kept.method, kept.path, kept.scheme, kept.client) == ("GET", "/chat", "http", ("127.0.0.1", 5000))
    assert kept.params["room"] == "lobby"
    assert kept.query.getall("n") == ["3", "4"]
    assert kept.cookies == {"a": "1", "b": "2"}
    assert kept.headers.items() == [
        ("host", "server.example.com"),
        ("origin", "http://server.example.com"),
        ("cookie", "a=1; b=2"),
    ]
    assert kept.host == "server.example.com"
    assert kept.headers is kept.headers  # made once, then kept
    assert kept.headers.get("Origin") == "http://server.example.com"


def test_the_kept_request_shares_a_fixed_routes_path_string() -> None:
    from reactor.websocket.route import WebSocketRoute

    pattern = "".join(["/ch", "at"])  # the route table's string, as the router sets it
    request = upgrade()
    request.target = request.path = "/chat?"[:5]  # the request's own, equal copy
    request.route = pattern
    answer = WebSocketRoute(object)(request)

    class Connection:
        loop = type("Loop", (), {"now": 0.0})()
        config = Config()

        def connection_lost(self, exc: Exception | None) -> None:
            pass

    assert answer.start is not None
    kept = answer.start(Connection()).request  # type: ignore[arg-type]
    assert kept.path == kept.target == "/chat"
    assert kept.path is pattern and kept.target is pattern  # every socket of the route shares it
