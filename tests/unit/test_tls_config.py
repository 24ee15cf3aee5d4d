"""TLS settings: what Config, the command line and make_context accept and refuse (no sockets)."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import pytest

from loadtests.certs import Certs, make_ca
from reactor import Config
from reactor.cli import parse_args
from reactor.http.request import Headers, Request
from reactor.log import compile_format
from reactor.tls import TLSConfigError, make_context

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_ca(tmp_path_factory.mktemp("tls-unit"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"keyfile": "k.pem"}, "keyfile needs certfile"),
        ({"ca_certs": "ca.pem"}, "ca_certs needs certfile"),
        ({"ssl_ciphers": "HIGH"}, "ssl_ciphers needs certfile"),
        ({"certfile": "c.pem", "cert_reqs": 3}, "cert_reqs must be 0"),
        ({"certfile": "c.pem", "proxy_protocol": True}, "proxy_protocol with certfile"),
        ({"handshake_timeout_s": 0}, "handshake_timeout_s must be positive"),
    ],
)
def test_config_refuses_tls_settings_that_cannot_work(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Config(**fields)  # type: ignore[arg-type]


@needs_openssl
def test_the_context_is_tls12_or_later_and_checks_client_certificates_only_with_ca_certs(
    certs: Certs,
) -> None:
    context = make_context(Config(certfile=str(certs.cert), keyfile=str(certs.key)))
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.verify_mode is ssl.CERT_NONE
    assert context.options & ssl.OP_NO_COMPRESSION and context.options & ssl.OP_NO_RENEGOTIATION
    required = make_context(Config(certfile=str(certs.cert), keyfile=str(certs.key), ca_certs=str(certs.ca)))
    assert required.verify_mode is ssl.CERT_REQUIRED
    optional = make_context(
        Config(certfile=str(certs.cert), keyfile=str(certs.key), ca_certs=str(certs.ca), cert_reqs=1)
    )
    assert optional.verify_mode is ssl.CERT_OPTIONAL


@needs_openssl
def test_bad_files_are_named_in_the_error(certs: Certs, tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError, match=r"keyfile '/nope\.key': no such file"):
        make_context(Config(certfile=str(certs.cert), keyfile="/nope.key"))
    with pytest.raises(TLSConfigError, match="KEY_VALUES_MISMATCH"):
        make_context(Config(certfile=str(certs.cert), keyfile=str(certs.client_key)))
    bad = tmp_path / "empty.pem"
    bad.write_text("nothing here\n")
    with pytest.raises(TLSConfigError, match="no CA certificates"):
        make_context(Config(certfile=str(certs.cert), keyfile=str(certs.key), ca_certs=str(bad)))


def test_the_command_line_maps_the_tls_flags_onto_config(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--certfile", "/nonexistent/cert.pem", "--cert-reqs", "optional"])
    assert exit_info.value.code == 2
    assert "TLS: certfile '/nonexistent/cert.pem': no such file" in capsys.readouterr().err


@needs_openssl
def test_flags_become_config_fields(certs: Certs) -> None:
    args = parse_args(
        [
            *("--certfile", str(certs.cert), "--keyfile", str(certs.key), "--ca-certs", str(certs.ca)),
            *("--cert-reqs", "optional", "--ssl-ciphers", "ECDHE+AESGCM", "--handshake-timeout", "2.5"),
        ]
    )
    config: Config = args.config
    assert (config.certfile, config.keyfile, config.ca_certs) == (
        str(certs.cert),
        str(certs.key),
        str(certs.ca),
    )
    assert (config.cert_reqs, config.ssl_ciphers, config.handshake_timeout_s) == (1, "ECDHE+AESGCM", 2.5)


def test_the_access_log_scheme_atom() -> None:
    request = Request("GET", "/", "/", "", "HTTP/1.1", Headers([("host", "h")]))
    fmt = compile_format("%(S)s %(r)s")
    assert fmt("c", request, 200, 0, 0.0) == "http GET / HTTP/1.1"
    request.scheme = "https"
    assert fmt("c", request, 200, 0, 0.0) == "https GET / HTTP/1.1"
    assert fmt("c", "GET /x HTTP/1.1", 413, 0, 0.0) == "- GET /x HTTP/1.1"  # a refusal
