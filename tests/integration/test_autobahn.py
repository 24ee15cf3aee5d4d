"""Autobahn|Testsuite's cases 1 to 7 against the demo's /ws/echo (about a minute, or much less).

Framing, pings and pongs, reserved bits, opcodes, fragmentation, UTF-8 and
the close handshake; the full run (9.* performance and the 12.*/13.*
compression cases included) is ``python -m loadtests.autobahn``.
"""

from __future__ import annotations

import pytest

from loadtests import autobahn


def test_autobahn_cases_1_to_7_pass() -> None:
    reason = autobahn.install()
    if reason is not None:
        pytest.skip(f"Autobahn|Testsuite cannot be installed: {reason}")
    results = autobahn.run(["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*"], [])
    assert len(results) > 200, f"only {len(results)} cases ran"
    bad = {case: results[case] for case in autobahn.failures(results)}
    assert not bad, autobahn.summary(results)
    informational = sorted(case for case, result in results.items() if result["behavior"] == "INFORMATIONAL")
    # 7.1.6 (a large message, then a Close, then a ping: what arrives after
    # the Close is unspecified) and 7.13.* (close codes outside the ranges the
    # RFC defines: the server may refuse or accept them) have no right answer.
    assert set(informational) <= {"7.1.6", "7.13.1", "7.13.2"}, informational
