"""Request identity: proves to deployments that a request comes from this server.

Same scheme as the official server ("v1"), which the official SDKs verify when given
the server's public key (``identity_keys=["publickeyv1_..."]`` in the Python SDK):

* every request to a deployment (discovery and invocations) carries
  ``x-restate-signature-scheme: v1`` and ``x-restate-jwt-v1: <JWT>``;
* the JWT is signed with an ed25519 key (alg ``EdDSA``), its header is
  ``{"typ":"JWT","alg":"EdDSA","kid":"publickeyv1_..."}`` and its claims are
  ``aud`` (the request path without the deployment's base path, e.g.
  ``/invoke/Svc/handler`` or ``/discover``), ``exp``/``iat``/``nbf`` in Unix seconds
  (``nbf = iat - 60``, ``exp = iat + 60`` by default), and ``sub`` (the raw, not
  percent-encoded, object or workflow key) for keyed invocations only;
* the public key is published as ``publickeyv1_`` + base58 of its raw 32 bytes.

Without a key the official sends no identity headers at all, so neither do we.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SCHEME_HEADER = "x-restate-signature-scheme"
JWT_HEADER = "x-restate-jwt-v1"
SCHEME_V1 = "v1"
PUBLIC_KEY_PREFIX = "publickeyv1_"
# The official's `request-identity-expiration` default; it clamps lower values to 1 s.
DEFAULT_EXPIRATION_S = 60
# The official server's variable (its deprecated root option, still honoured by 1.7).
PEM_FILE_ENV = "RESTATE_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE"

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# Tokens minted in the same second for the same audience and subject are identical
# (ed25519 signatures are deterministic), so one second's worth is kept for reuse.
_CACHE_LIMIT = 1024


class IdentityKeyError(ValueError):
    """The request identity private key cannot be used; the message says why."""


def b58encode(data: bytes) -> str:
    """Base58 with the Bitcoin alphabet, as the `bs58` crate the SDKs decode with.

    An encoding, not cryptography: leading zero bytes become leading "1"s.
    """
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, rem = divmod(n, 58)
        out.append(_B58_ALPHABET[rem])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def audience(path: str) -> str:
    """The ``aud`` for a request to ``path``: the path without any deployment base path.

    The official signs ``/invoke/{service}/{handler}`` and ``/discover`` before joining
    them to the deployment URI, and the SDKs strip a base path the same way before
    checking, so a prefixed path given here is cut back to that suffix.
    """
    slashes = [i for i, c in enumerate(path) if c == "/"]
    if len(slashes) >= 3 and path[slashes[-3] : slashes[-2]] == "/invoke":
        return path[slashes[-3] :]
    if slashes and path[slashes[-1] :] == "/discover":
        return path[slashes[-1] :]
    return path


class RequestSigner:
    """Mints the identity headers for requests to deployments with one ed25519 key."""

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        *,
        expiration_s: int = DEFAULT_EXPIRATION_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = private_key
        self._expiration_s = max(1, int(expiration_s))
        self._clock = clock
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._kid = PUBLIC_KEY_PREFIX + b58encode(raw)
        self._cache_second = -1
        self._cache: dict[tuple[str, str | None], str] = {}

    def public_key_string(self) -> str:
        """The public key in the SDKs' format, also the JWT's ``kid``."""
        return self._kid

    def token(self, path: str, service_key: str | None = None) -> str:
        """A fresh JWT for a request to ``path`` (``service_key``: object/workflow key)."""
        now = int(self._clock())
        aud = audience(path)
        if now != self._cache_second:
            self._cache_second = now
            self._cache.clear()
        cache_key = (aud, service_key)
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        # Claim order and header layout as the official emits them.
        claims: dict[str, object] = {
            "aud": aud,
            "exp": now + self._expiration_s,
            "iat": now,
            "nbf": max(0, now - self._expiration_s),
        }
        if service_key is not None:
            claims["sub"] = service_key
        token = jwt.encode(
            claims, self._key, algorithm="EdDSA", headers={"kid": self._kid}, sort_headers=False
        )
        if len(self._cache) >= _CACHE_LIMIT:
            # Many distinct keys in one second: start over rather than grow.
            self._cache.clear()
        self._cache[cache_key] = token
        return token

    def headers(self, path: str, service_key: str | None = None) -> list[tuple[str, str]]:
        """The identity headers to add to a request to ``path`` on a deployment.

        ``path`` is the request path (``/invoke/Svc/handler``, ``/discover``), with or
        without the deployment's base path; ``service_key`` is the virtual object or
        workflow key of a keyed invocation (the official puts it in ``sub``).
        """
        return [(SCHEME_HEADER, SCHEME_V1), (JWT_HEADER, self.token(path, service_key))]


def _read_private_key(pem_path: Path) -> Ed25519PrivateKey:
    try:
        data = pem_path.read_bytes()
    except OSError as e:
        reason = e.strerror or str(e)
        raise IdentityKeyError(
            f"cannot read request identity private key file {pem_path}: {reason}"
        ) from e
    # Like the official: the file holds exactly one PEM block, so a stray second key
    # (or a certificate) is an error rather than silently ignored.
    blocks = data.count(b"-----BEGIN ")
    if blocks != 1:
        raise IdentityKeyError(
            f"request identity private key file {pem_path} must contain exactly one "
            f"PEM block, found {blocks}; generate one with `openssl genpkey -algorithm ed25519`"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise IdentityKeyError(
            f"request identity private key file {pem_path} does not hold a usable, "
            f"unencrypted private key in PEM format: {e}"
        ) from e
    except Exception as e:  # cryptography signals some unsupported keys with its own types
        raise IdentityKeyError(
            f"request identity private key file {pem_path} cannot be loaded: {e}"
        ) from e
    if not isinstance(key, Ed25519PrivateKey):
        kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "") or "unknown"
        raise IdentityKeyError(
            f"request identity private key file {pem_path} holds a key of type {kind}, "
            "but an ed25519 key is required (`openssl genpkey -algorithm ed25519`)"
        )
    return key


def load_signer(
    pem_path: Path | str,
    *,
    expiration_s: int = DEFAULT_EXPIRATION_S,
    clock: Callable[[], float] = time.time,
) -> RequestSigner:
    """Load the ed25519 private key (PKCS#8 PEM, "BEGIN PRIVATE KEY") at ``pem_path``.

    Raises `IdentityKeyError` with a readable message for a missing or unreadable file,
    a file that is not one PEM private key, an encrypted key, or a key of another type.
    """
    return RequestSigner(_read_private_key(Path(pem_path)), expiration_s=expiration_s, clock=clock)


def public_key_from_pem(pem_path: Path | str) -> str:
    """The ``publickeyv1_...`` string for the private key at ``pem_path``.

    What users put in their services' identity keys, and what the official server logs
    as ``kid`` ("Loaded request identity key") at startup.
    """
    return load_signer(pem_path).public_key_string()
