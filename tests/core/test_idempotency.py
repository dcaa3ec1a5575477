"""Unit tests of idempotency rules, body descriptions and replayability."""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest

from rstsafe import IdempotencyRules, replayability
from rstsafe.core import BodyInfo, BodyKind, describe_body, rewind_body


@pytest.mark.parametrize("method", ["GET", "head", "Options", "TRACE", "PUT", "DELETE"])
def test_rfc9110_methods_are_idempotent(method: str) -> None:
    """RFC 9110's idempotent methods (any case) are replayable without a body."""
    result = replayability(method)
    assert result.replayable
    assert result.reason is None


@pytest.mark.parametrize("method", ["POST", "PATCH", "CONNECT", "LOCK"])
def test_other_methods_are_not(method: str) -> None:
    """POST, PATCH and others are not replayable and the reason says so."""
    result = replayability(method, {}, b"x")
    assert not result.replayable
    assert result.reason is not None
    assert "not idempotent" in result.reason


@pytest.mark.parametrize(
    "headers",
    [
        {"Idempotency-Key": "abc"},
        {"x-idempotency-key": ""},
        [("IDEMPOTENCY-KEY", "abc")],
        [(b"idempotency-key", b"abc")],
        {b"X-Idempotency-Key": b"1"},
    ],
)
def test_idempotency_key_makes_post_replayable(headers: object) -> None:
    """An idempotency header (any case, str or bytes, even empty) makes POST replayable."""
    result = replayability("POST", headers, b"body")  # type: ignore[arg-type]
    assert result.replayable


def test_requests_and_httpx_header_types_work() -> None:
    """requests' CaseInsensitiveDict and httpx.Headers are recognised as mappings."""
    import httpx
    from requests.structures import CaseInsensitiveDict

    assert replayability("POST", CaseInsensitiveDict({"Idempotency-Key": "k"})).replayable
    assert replayability("POST", httpx.Headers({"idempotency-key": "k"})).replayable


def test_rules_are_configurable() -> None:
    """Custom rules: only GET idempotent, a custom key header."""
    rules = IdempotencyRules(
        idempotent_methods=frozenset({"get"}), idempotency_headers=frozenset({"X-Req-Id"})
    )
    assert rules.idempotent_methods == frozenset({"GET"})
    assert not replayability("PUT", rules=rules).replayable
    assert replayability("POST", {"x-req-id": "1"}, rules=rules).replayable
    assert not replayability("POST", {"Idempotency-Key": "1"}, rules=rules).replayable


def test_rules_reject_a_single_string() -> None:
    """A bare string instead of a collection is a ValueError naming the field."""
    with pytest.raises(ValueError, match="idempotent_methods"):
        IdempotencyRules(idempotent_methods="GET")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="idempotency_headers"):
        IdempotencyRules(idempotency_headers="Idempotency-Key")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (None, BodyKind.NONE),
        (b"", BodyKind.NONE),
        (b"abc", BodyKind.BYTES),
        ("text", BodyKind.BYTES),
        (bytearray(b"ab"), BodyKind.BYTES),
        (memoryview(b"abc"), BodyKind.BYTES),
        ({"field": "value"}, BodyKind.BYTES),
        ([b"a", b"b"], BodyKind.BYTES),
        (iter([b"a"]), BodyKind.STREAM),
        (object(), BodyKind.STREAM),
    ],
)
def test_describe_body(body: object, kind: BodyKind) -> None:
    """Common body objects are described as the right kind."""
    assert describe_body(body).kind is kind


def test_generators_and_async_iterators_are_streams() -> None:
    """A generator or async generator body is a stream: never replayable."""

    def gen() -> Generator[bytes, None, None]:
        yield b"x"

    async def agen() -> AsyncIterator[bytes]:
        yield b"x"

    g, ag = gen(), agen()
    assert describe_body(g).kind is BodyKind.STREAM
    assert describe_body(ag).kind is BodyKind.STREAM
    assert not replayability("PUT", None, g).replayable
    g.close()


def test_seekable_file_records_start_and_rewinds(tmp_path: Path) -> None:
    """A real file is SEEKABLE from its current position; rewind_body seeks back there."""
    path = tmp_path / "body"
    path.write_bytes(b"0123456789")
    with path.open("rb") as f:
        f.read(3)
        info = describe_body(f)
        assert info == BodyInfo(kind=BodyKind.SEEKABLE, start=3)
        f.read()
        rewind_body(f, info)
        assert f.read() == b"3456789"
        assert replayability("PUT", None, info).replayable


def test_bytesio_is_seekable() -> None:
    """io.BytesIO is seekable and replayable."""
    assert describe_body(io.BytesIO(b"abc")).kind is BodyKind.SEEKABLE


def test_pipe_is_a_stream() -> None:
    """A pipe has tell() but cannot seek: a stream."""
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as reader, os.fdopen(write_fd, "wb"):
        assert describe_body(reader).kind is BodyKind.STREAM


def test_closed_file_is_a_stream() -> None:
    """A closed file cannot be told or sought: a stream, not an exception."""
    f = io.BytesIO(b"x")
    f.close()
    assert describe_body(f).kind is BodyKind.STREAM


def test_rewind_refuses_a_stream() -> None:
    """rewind_body on a stream raises ValueError."""
    with pytest.raises(ValueError, match="stream"):
        rewind_body(iter([b"x"]), BodyInfo(kind=BodyKind.STREAM))


def test_body_reason_for_idempotent_method() -> None:
    """PUT with a consumed stream is not replayable because of the body."""
    result = replayability("PUT", None, BodyInfo(kind=BodyKind.CONSUMED))
    assert result.idempotent
    assert not result.body_replayable
    assert result.reason is not None
    assert "consumed stream" in result.reason


def test_body_info_validation() -> None:
    """A seekable body needs a start >= 0; lengths are >= 0."""
    with pytest.raises(ValueError, match="start"):
        BodyInfo(kind=BodyKind.SEEKABLE)
    with pytest.raises(ValueError, match="length"):
        BodyInfo(kind=BodyKind.BYTES, length=-1)
    info = BodyInfo(kind=BodyKind.BYTES)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.kind = BodyKind.NONE  # type: ignore[misc]
