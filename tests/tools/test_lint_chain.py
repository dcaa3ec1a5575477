"""The lint rule over a chain of hops, presets, and live client objects."""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest
import requests
import urllib3
from hypothesis import given
from hypothesis import strategies as st
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import rstsafe
import rstsafe.core
import rstsafe.tools
from rstsafe.tools import Hop, HopKind, Severity, lint
from rstsafe.tools._lint import recommended_ttl
from rstsafe.tools._lint._chain import check_chain
from rstsafe.tools._lint._topology import CLIENT_PRESETS, HOP_PRESETS, hop_from_preset


def client(ttl: float | None) -> Hop:
    return Hop(name="client", kind=HopKind.CLIENT, upstream_idle_ttl=ttl)


def codes(findings: object) -> list[str]:
    return [f.code for f in findings]  # type: ignore[attr-defined]


def test_recommended_ttl_is_the_cores_rule() -> None:
    """The margin lint asks for is exactly KeepAlive's: min(2 s, 25 %) below the timeout."""
    assert recommended_ttl(60.0) == pytest.approx(58.0)
    assert recommended_ttl(2.0) == pytest.approx(1.5)
    assert recommended_ttl(60.0) == rstsafe.KeepAlive().ttl_below(60.0)


def test_no_ttl_in_front_of_a_server_is_an_error() -> None:
    """A pool with no idle TTL (urllib3) in front of any keep-alive server: RST001."""
    server = Hop(name="app", kind=HopKind.SERVER, idle_timeout=5.0)
    (finding,) = check_chain([client(math.inf), server], recommended_ttl=recommended_ttl)
    assert finding.code == "RST001"
    assert finding.severity is Severity.ERROR
    assert finding.hops == ("client", "app")
    assert "3.75 s" in finding.fix


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [(90.0, ["RST002"]), (75.0, ["RST002"]), (74.0, ["RST003"]), (73.0, []), (30.0, [])],
)
def test_ttl_against_nginx_default(ttl: float, expected: list[str]) -> None:
    """Against nginx's 75 s: at/above is an error, within the 2 s margin a warning, below fine."""
    nginx = hop_from_preset("nginx")
    assert codes(check_chain([client(ttl), nginx], recommended_ttl=recommended_ttl)) == expected


def test_middlebox_bounds_the_link() -> None:
    """The smallest idle limit on a link wins: NAT 350 s passes OkHttp 300 s, Azure 240 s not."""
    server = Hop(name="origin", kind=HopKind.SERVER, idle_timeout=600.0)
    okhttp = client(CLIENT_PRESETS["okhttp"])
    nat = hop_from_preset("aws-nat-gateway")
    assert check_chain([okhttp, nat, server], recommended_ttl=recommended_ttl) == []
    azure = hop_from_preset("azure-lb")
    (finding,) = check_chain([okhttp, azure, server], recommended_ttl=recommended_ttl)
    assert finding.code == "RST002"
    assert finding.hops == ("client", "azure-lb")
    assert "forgets an idle flow after 240 s" in finding.message


def test_alb_in_front_of_gunicorn_is_the_classic_502() -> None:
    """ALB (reuses 60 s) in front of gunicorn gthread (2 s): the proxy's link is an error too."""
    chain = [client(5.0), hop_from_preset("aws-alb"), hop_from_preset("gunicorn-gthread")]
    findings = check_chain(chain, recommended_ttl=recommended_ttl)
    assert codes(findings) == ["RST002"]
    assert findings[0].hops == ("aws-alb", "gunicorn")


def test_keepalive_off_needs_nothing() -> None:
    """A server with keep-alive off (gunicorn sync) is never reused: no finding."""
    chain = [client(math.inf), hop_from_preset("gunicorn")]
    assert check_chain(chain, recommended_ttl=recommended_ttl) == []


def test_unknown_values_are_notes() -> None:
    """Unknown idle timeouts or TTLs are notes (RST004), never errors."""
    unknown_server = Hop(name="app", kind=HopKind.SERVER)
    findings = check_chain([client(10.0), unknown_server], recommended_ttl=recommended_ttl)
    assert codes(findings) == ["RST004"]
    assert findings[0].severity is Severity.NOTE
    unknown_ttl = check_chain(
        [client(None), hop_from_preset("uvicorn")], recommended_ttl=recommended_ttl
    )
    assert codes(unknown_ttl) == ["RST004"]


timeouts = st.floats(min_value=0.5, max_value=1000, allow_nan=False)


@given(server_timeout=timeouts, ttl=st.floats(min_value=0.01, max_value=2000, allow_nan=False))
def test_rule_property(server_timeout: float, ttl: float) -> None:
    """For any TTL and timeout: error iff TTL >= timeout, clean iff TTL <= the core's TTL."""
    server = Hop(name="app", kind=HopKind.SERVER, idle_timeout=server_timeout)
    found = codes(check_chain([client(ttl), server], recommended_ttl=recommended_ttl))
    if ttl >= server_timeout:
        assert found == ["RST002"]
    elif ttl <= recommended_ttl(server_timeout):
        assert found == []
    else:
        assert found == ["RST003"]


def test_presets_cover_the_issue() -> None:
    """The presets carry the documented limits of the issue's infrastructure."""
    assert HOP_PRESETS["aws-alb"].idle_timeout == 60
    assert HOP_PRESETS["aws-nlb"].idle_timeout == 350
    assert HOP_PRESETS["aws-nat-gateway"].idle_timeout == 350
    assert HOP_PRESETS["gcp-lb"].upstream_idle_ttl == 600
    assert HOP_PRESETS["azure-lb"].idle_timeout == 240
    assert HOP_PRESETS["cloudflare"].idle_timeout == 400
    with pytest.raises(ValueError, match="unknown preset 'aws-elb'"):
        hop_from_preset("aws-elb")


def test_hop_validation_names_the_field() -> None:
    """Hop rejects bad values with a ValueError naming the field."""
    with pytest.raises(ValueError, match="idle_timeout"):
        Hop(name="x", kind=HopKind.SERVER, idle_timeout=-1)
    with pytest.raises(ValueError, match="upstream_idle_ttl"):
        Hop(name="x", kind=HopKind.CLIENT, upstream_idle_ttl=0)
    with pytest.raises(ValueError, match="name"):
        Hop(name="", kind=HopKind.SERVER)


# --------------------------------------------------------------------------- live clients


def test_requests_session_has_no_ttl() -> None:
    """requests.Session behind an ALB: RST001, because urllib3 has no idle TTL at all."""
    with requests.Session() as session:
        report = lint(session, upstream="aws-alb")
    assert not report.ok
    assert report.exit_code == 1
    (finding,) = report.errors
    assert finding.code == "RST001"
    assert finding.hops == ("requests.Session", "aws-alb")


def test_requests_session_retrying_post() -> None:
    """A session whose adapter retries POST gets RST102; socket_options without NODELAY RST104."""
    with requests.Session() as session:
        session.mount(
            "https://", HTTPAdapter(max_retries=Retry(total=3, allowed_methods=["GET", "POST"]))
        )
        report = lint(session)
    assert "RST102" in codes(report.findings)


def test_urllib3_pool_manager() -> None:
    """urllib3.PoolManager: no TTL (RST001), no TCP_NODELAY (RST104), any-method retry (RST102)."""
    manager = urllib3.PoolManager(
        socket_options=[(6, 4, 60)],  # TCP_KEEPIDLE only
        retries=Retry(total=2, allowed_methods=None),
    )
    report = lint(manager, upstream="uvicorn")
    assert sorted(codes(report.findings)) == ["RST001", "RST102", "RST104"]
    manager.clear()


def test_httpx_client_expiry_read_from_the_pool() -> None:
    """httpx.Client's keepalive_expiry (5 s default) is read from its transport's pool."""
    with httpx.Client() as default_client:
        report = lint(default_client, upstream=5.0)
    assert codes(report.findings) == ["RST002"]
    assert report.hops[0].upstream_idle_ttl == 5.0
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=5, keepalive_expiry=3.0)
    with httpx.Client(limits=limits) as tuned:
        assert lint(tuned, upstream=5.0).findings == ()
    with httpx.Client(limits=httpx.Limits(keepalive_expiry=None)) as unbounded:
        assert codes(lint(unbounded, upstream="nginx").findings) == ["RST001"]


async def _async_client_report() -> rstsafe.tools.LintReport:
    async with httpx.AsyncClient(limits=httpx.Limits(keepalive_expiry=90.0)) as client_:
        return lint(client_, upstream="nginx")


def test_httpx_async_client() -> None:
    """httpx.AsyncClient is inspected the same way (90 s against nginx's 75 s: RST002)."""
    report = asyncio.run(_async_client_report())
    assert codes(report.findings) == ["RST002"]


class _RstsafeLike:
    """An adapter exposing its keep-alive policy the rstsafe way."""

    def __init__(self, policy: object) -> None:
        self.rstsafe_keepalive = policy


def test_rstsafe_clients_by_duck_typing() -> None:
    """Objects with rstsafe_keepalive are checked with the TTL their policy applies."""
    configured = _RstsafeLike(rstsafe.KeepAlive(server_keepalive=75.0))
    assert lint(configured, upstream="nginx").findings == ()
    wrong = _RstsafeLike(rstsafe.KeepAlive(server_keepalive=600.0, max_lifetime=None))
    assert codes(lint(wrong, upstream="aws-alb").findings) == ["RST002"]
    # The default max lifetime (300 s) keeps even a long TTL below a NAT gateway's 350 s.
    lifetime_capped = _RstsafeLike(rstsafe.KeepAlive(server_keepalive=600.0))
    assert lint(lifetime_capped, upstream=["aws-nat-gateway", 600.0]).findings == ()
    registry = _RstsafeLike(rstsafe.core.KeepAliveRegistry(rstsafe.KeepAlive()))
    assert lint(registry, upstream="nginx").findings == ()
    assert lint(registry, upstream="nginx").hops[0].detail == "rstsafe keep-alive policy"


def test_rstsafe_httpx_client_is_recognised() -> None:
    """rstsafe.httpx.Client is checked with its keep-alive policy, not httpx's 5 s default."""
    import rstsafe.httpx

    with rstsafe.httpx.Client() as default:
        report = lint(default, upstream="nginx")
    assert report.findings == ()
    assert report.hops[0].detail == "rstsafe keep-alive policy"
    assert report.hops[0].upstream_idle_ttl == rstsafe.KeepAlive().default_idle_ttl
    # In front of gunicorn's 2 s, the 4 s default is too long until configured:
    with rstsafe.httpx.Client() as default:
        assert codes(lint(default, upstream="gunicorn-gthread").findings) == ["RST002"]
    keepalive = rstsafe.KeepAlive(server_keepalive=2.0)
    with rstsafe.httpx.Client(transport=rstsafe.httpx.Transport(keepalive=keepalive)) as tuned:
        assert lint(tuned, upstream="gunicorn-gthread").findings == ()


def test_rstsafe_requests_and_urllib3_are_recognised() -> None:
    """rstsafe.requests.Session and rstsafe.urllib3.PoolManager pass where plain ones fail."""
    import rstsafe.requests
    import rstsafe.urllib3

    with rstsafe.requests.Session() as session:
        report = lint(session, upstream="aws-alb")
        assert report.findings == ()
        assert report.hops[0].name == "rstsafe.requests.Session"  # the public name
    manager = rstsafe.urllib3.PoolManager()
    report = lint(manager, upstream="aws-alb")
    assert report.findings == ()
    assert report.hops[0].name == "rstsafe.urllib3.PoolManager"
    manager.clear()
    with requests.Session() as plain:
        assert codes(lint(plain, upstream="aws-alb").findings) == ["RST001"]


def test_unsupported_client_is_a_type_error() -> None:
    """An object lint cannot inspect raises TypeError naming what is supported."""
    with pytest.raises(TypeError, match=r"requests\.Session"):
        lint(object())
