"""Request identity signing, checked against the official server's output and the SDK.

The key below is a throwaway generated for these tests. The official restate-server
1.7.12, given it as RESTATE_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE, logged it as
`kid: "publickeyv1_D7r82..."` and sent the tokens below to a deployment; with the same
clock our signer must produce them byte for byte. The verifier is the Python SDK's own
(`restate._internal.PyIdentityVerifier`, what `identity_keys=[...]` configures).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from restate._internal import (  # type: ignore[attr-defined]
    IdentityKeyException,
    IdentityVerificationException,
    PyIdentityVerifier,
)

from pyrestate.identity import (
    JWT_HEADER,
    PEM_FILE_ENV,
    SCHEME_HEADER,
    IdentityKeyError,
    RequestSigner,
    audience,
    b58encode,
    load_signer,
    public_key_from_pem,
)

PEM = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEILXh8hUWra1i7S4u48mQl02Q3eq4OZAVBYs0eePhPP3x
-----END PRIVATE KEY-----
"""
KID = "publickeyv1_D7r82sDM5TcTV5Pumk8oY9Y2DHaUn1JML7UcGWo5DtB"

# Captured from the official server: (path as the deployment saw it, service key, iat, token).
OFFICIAL_DISCOVER = (
    "/base/discover",
    None,
    1795328856,
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSIsImtpZCI6InB1YmxpY2tleXYxX0Q3cjgyc0RNNVRjVFY1UHVtazhvWTlZ"
    "MkRIYVVuMUpNTDdVY0dXbzVEdEIifQ.eyJhdWQiOiIvZGlzY292ZXIiLCJleHAiOjE3OTUzMjg5MTYsImlhdCI6MTc5NT"
    "MyODg1NiwibmJmIjoxNzk1MzI4Nzk2fQ.Vlmx_rACHoz7WZs98kn0XniCiVwApWgccgYVmSL6OByLk2j8-kH-0LwUxVCtc"
    "q0emWiEG_VkzDgAyL4zJLoqCw",
)
OFFICIAL_INVOKE = (
    "/invoke/Greeter/greet",
    None,
    1795328856,
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSIsImtpZCI6InB1YmxpY2tleXYxX0Q3cjgyc0RNNVRjVFY1UHVtazhvWTlZ"
    "MkRIYVVuMUpNTDdVY0dXbzVEdEIifQ.eyJhdWQiOiIvaW52b2tlL0dyZWV0ZXIvZ3JlZXQiLCJleHAiOjE3OTUzMjg5MT"
    "YsImlhdCI6MTc5NTMyODg1NiwibmJmIjoxNzk1MzI4Nzk2fQ.vBMaIzqU-nKFZ22Lk10gEX_78hr_3Dxd3qxz9B1woRXyI"
    "bu0rlu74nfrvfzcjeCU-imOzwTPy6GNY-aTR6p6Ag",
)
OFFICIAL_KEYED = (
    "/invoke/Obj/touch",
    "my key/1",  # sent as x-restate-service-key: my%20key%2F1, but raw in `sub`
    1795328856,
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSIsImtpZCI6InB1YmxpY2tleXYxX0Q3cjgyc0RNNVRjVFY1UHVtazhvWTlZ"
    "MkRIYVVuMUpNTDdVY0dXbzVEdEIifQ.eyJhdWQiOiIvaW52b2tlL09iai90b3VjaCIsImV4cCI6MTc5NTMyODkxNiwiaW"
    "F0IjoxNzk1MzI4ODU2LCJuYmYiOjE3OTUzMjg3OTYsInN1YiI6Im15IGtleS8xIn0.UX2EKYIL7rmUFDO9z6IjcQRfIag7"
    "3V_gsKDPq_09H7E6ywppjv72XdnS5UX7-KbrsYGB4JbBPR0e1dphUfhaAA",
)

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58decode(text: str) -> bytes:
    # Independent decoder for round trips; the SDK's parser is checked separately.
    n = 0
    for ch in text:
        n = n * 58 + _B58.index(ch)
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


@pytest.fixture
def pem_file(tmp_path: Path) -> Path:
    path = tmp_path / "key.pem"
    path.write_bytes(PEM)
    return path


def _pem_of(key: object, *, password: bytes | None = None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _part(token: str, index: int) -> dict:
    seg = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


def _public(key_path: Path) -> ed25519.Ed25519PublicKey:
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key.public_key()


# --- what the official sends


def test_public_key_string_is_the_official_kid(pem_file: Path) -> None:
    assert public_key_from_pem(pem_file) == KID
    assert load_signer(pem_file).public_key_string() == KID
    assert load_signer(str(pem_file)).public_key_string() == KID


@pytest.mark.parametrize(
    "captured",
    [OFFICIAL_DISCOVER, OFFICIAL_INVOKE, OFFICIAL_KEYED],
    ids=["discover", "invoke", "keyed"],
)
def test_tokens_are_byte_identical_to_the_officials(
    pem_file: Path, captured: tuple[str, str | None, int, str]
) -> None:
    path, key, iat, token = captured
    signer = load_signer(pem_file, clock=lambda: iat + 0.75)
    assert signer.token(path, key) == token
    assert signer.headers(path, key) == [
        ("x-restate-signature-scheme", "v1"),
        ("x-restate-jwt-v1", token),
    ]


def test_header_names() -> None:
    assert SCHEME_HEADER == "x-restate-signature-scheme"
    assert JWT_HEADER == "x-restate-jwt-v1"
    assert PEM_FILE_ENV == "RESTATE_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE"


def test_claims_and_jwt_header(pem_file: Path) -> None:
    signer = load_signer(pem_file, clock=lambda: 1_800_000_000.4)
    token = signer.token("/invoke/Svc/handler")
    assert _part(token, 0) == {"typ": "JWT", "alg": "EdDSA", "kid": KID}
    assert _part(token, 1) == {
        "aud": "/invoke/Svc/handler",
        "exp": 1_800_000_060,
        "iat": 1_800_000_000,
        "nbf": 1_799_999_940,
    }
    # Only keyed invocations carry `sub`, raw, even when empty.
    assert _part(signer.token("/invoke/Obj/h", "a/b c"), 1)["sub"] == "a/b c"
    assert _part(signer.token("/invoke/Obj/h", ""), 1)["sub"] == ""
    assert "sub" not in _part(signer.token("/discover"), 1)


def test_token_verifies_with_the_public_key(pem_file: Path) -> None:
    token = load_signer(pem_file).token("/invoke/Svc/handler", "k")
    claims = jwt.decode(
        token,
        _public(pem_file),
        algorithms=["EdDSA"],
        audience="/invoke/Svc/handler",
        options={"require": ["aud", "exp", "iat", "nbf"]},
    )
    assert claims["sub"] == "k"
    assert claims["exp"] - claims["iat"] == 60
    assert claims["iat"] - claims["nbf"] == 60


def test_custom_expiration_and_clamp(pem_file: Path) -> None:
    token = load_signer(pem_file, expiration_s=300, clock=lambda: 1000).token("/discover")
    assert _part(token, 1) == {"aud": "/discover", "exp": 1300, "iat": 1000, "nbf": 700}
    # The official clamps to at least 1 s.
    token = load_signer(pem_file, expiration_s=0, clock=lambda: 1000).token("/discover")
    assert _part(token, 1)["exp"] == 1001


# --- the SDK's verification


@pytest.mark.parametrize(
    ("signed_path", "request_path"),
    [
        ("/invoke/Svc/handler", "/invoke/Svc/handler"),
        ("/discover", "/discover"),
        # A deployment behind a base path: the SDK strips it before checking `aud`.
        ("/invoke/Svc/handler", "/base/path/invoke/Svc/handler"),
        ("/discover", "/base/discover"),
        # Given the path as sent, base path included, the signer strips it too.
        ("/base/path/invoke/Svc/handler", "/base/path/invoke/Svc/handler"),
        ("/base/discover", "/base/discover"),
    ],
)
def test_sdk_accepts(pem_file: Path, signed_path: str, request_path: str) -> None:
    headers = load_signer(pem_file).headers(signed_path)
    verifier = PyIdentityVerifier([KID])
    verifier.verify(headers, request_path)
    # Also among other headers and next to other accepted keys.
    other = load_signer(_write(pem_file.parent, ed25519.Ed25519PrivateKey.generate()))
    PyIdentityVerifier([other.public_key_string(), KID]).verify(
        [("content-type", "application/vnd.restate.invocation.v6"), *headers], request_path
    )


def _write(directory: Path, key: object, name: str = "other.pem", **kw: bytes) -> Path:
    path = directory / name
    path.write_bytes(_pem_of(key, **kw))
    return path


def test_sdk_rejects_another_key(pem_file: Path) -> None:
    other = load_signer(_write(pem_file.parent, ed25519.Ed25519PrivateKey.generate()))
    with pytest.raises(IdentityVerificationException):
        PyIdentityVerifier([KID]).verify(other.headers("/invoke/Svc/h"), "/invoke/Svc/h")


def test_sdk_rejects_wrong_audience(pem_file: Path) -> None:
    headers = load_signer(pem_file).headers("/invoke/Svc/other")
    with pytest.raises(IdentityVerificationException):
        PyIdentityVerifier([KID]).verify(headers, "/invoke/Svc/h")


def test_sdk_rejects_expired_and_not_yet_valid(pem_file: Path) -> None:
    import time

    now = time.time()
    old = load_signer(pem_file, clock=lambda: now - 3600).headers("/discover")
    future = load_signer(pem_file, clock=lambda: now + 3600).headers("/discover")
    for headers in (old, future):
        with pytest.raises(IdentityVerificationException):
            PyIdentityVerifier([KID]).verify(headers, "/discover")


def test_sdk_rejects_unsigned() -> None:
    with pytest.raises(IdentityVerificationException, match="missing header"):
        PyIdentityVerifier([KID]).verify([], "/discover")


def test_public_key_string_round_trips(tmp_path: Path) -> None:
    # Many keys, so some raw keys start with zero bytes (leading "1"s in base58).
    for i in range(300):
        key = ed25519.Ed25519PrivateKey.generate()
        signer = RequestSigner(key)
        text = signer.public_key_string()
        assert text.startswith("publickeyv1_")
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        assert b58decode(text.removeprefix("publickeyv1_")) == raw
        if i < 20:
            PyIdentityVerifier([text]).verify(signer.headers("/discover"), "/discover")
    assert load_signer(_write(tmp_path, key)).public_key_string() == text


def test_sdk_parses_our_key_and_rejects_malformed(pem_file: Path) -> None:
    PyIdentityVerifier([public_key_from_pem(pem_file)])
    for bad in ("D7r82sDM5TcTV5Pumk8oY9Y2DHaUn1JML7UcGWo5DtB", KID[:-3], KID + "0"):
        with pytest.raises(IdentityKeyException):
            PyIdentityVerifier([bad])


def test_b58encode() -> None:
    assert b58encode(b"") == ""
    assert b58encode(b"\0") == "1"
    assert b58encode(b"\0\0\x01") == "112"
    assert b58encode(b"\xff") == "5Q"
    assert b58encode(b"hello world") == "StV1DL6CwTryKyV"


@pytest.mark.parametrize(
    ("path", "aud"),
    [
        ("/invoke/a/b", "/invoke/a/b"),
        ("/foo/invoke/a/b", "/invoke/a/b"),
        ("/foo/bar/invoke/a/b", "/invoke/a/b"),
        ("/discover", "/discover"),
        ("/foo/bar/discover", "/discover"),
        ("/invoke/a", "/invoke/a"),
        ("/foo/invoke", "/foo/invoke"),
        ("/", "/"),
        ("", ""),
    ],
)
def test_audience(path: str, aud: str) -> None:
    assert audience(path) == aud


def test_tokens_are_reused_within_a_second_only(pem_file: Path) -> None:
    now = [100.0]
    signer = load_signer(pem_file, clock=lambda: now[0])
    first = signer.token("/invoke/Svc/h")
    now[0] = 100.9
    assert signer.token("/invoke/Svc/h") == first
    assert signer.token("/invoke/Svc/h", "k") != first
    assert signer.token("/invoke/Svc/other") != first
    now[0] = 101.0
    later = signer.token("/invoke/Svc/h")
    assert later != first
    assert _part(later, 1)["iat"] == 101


# --- loading errors


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(IdentityKeyError, match=r"cannot read .*nope\.pem: No such file"):
        load_signer(tmp_path / "nope.pem")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(IdentityKeyError, match="cannot read"):
        load_signer(tmp_path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "exactly one PEM block, found 0"),
        (b"not a key at all", "exactly one PEM block, found 0"),
        (PEM + PEM, "exactly one PEM block, found 2"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "usable"),
        (
            b"-----BEGIN PUBLIC KEY-----\n"
            b"MCowBQYDK2VwAyEAj5BTvH+WJo0QGHm2hdLOuk6P7szKgTQxmpnnmZe/DcU=\n"
            b"-----END PUBLIC KEY-----\n",
            "usable",
        ),
    ],
    ids=["empty", "garbage", "two-keys", "bad-der", "public-key"],
)
def test_not_one_private_key(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(content)
    with pytest.raises(IdentityKeyError, match=match):
        load_signer(path)


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda: rsa.generate_private_key(65537, 2048), "RSA"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "EC"),
        (ed448.Ed448PrivateKey.generate, "Ed448"),
    ],
    ids=["rsa", "ec", "ed448"],
)
def test_other_key_types(tmp_path: Path, make, kind: str) -> None:
    path = _write(tmp_path, make())
    with pytest.raises(IdentityKeyError, match=f"holds a key of type {kind}, but an ed25519 key"):
        load_signer(path)


def test_encrypted_key(tmp_path: Path) -> None:
    path = _write(tmp_path, ed25519.Ed25519PrivateKey.generate(), password=b"secret")
    with pytest.raises(IdentityKeyError, match="unencrypted"):
        load_signer(path)
