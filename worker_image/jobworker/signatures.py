"""Checking an ``Upstash-Signature``: the JWT QStash signs each delivery with, and the callback URL it names.

Verified with PyJWT directly (HS256): the current key, then the next key only when the signature itself does
not match; then ``iss``, ``exp``/``nbf`` with a small clock tolerance, ``sub`` against QSTASH_CALLBACK_URL plus
the path, a ``jti``, and the ``body`` claim against the SHA-256 of the body as received. Every failure raises
InvalidJobSignatureError saying which check failed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import urllib.parse
import warnings
from collections.abc import Mapping
from typing import Any

import jwt

from jobworker import errors

DEFAULT_CLOCK_TOLERANCE = 5.0
"""Seconds of clock skew allowed on exp and nbf."""


class SignatureVerifier:
    """Checks an ``Upstash-Signature`` JWT; every failure raises InvalidJobSignatureError saying what failed."""

    def __init__(self, current_key: str, next_key: str, *, clock_tolerance: float = DEFAULT_CLOCK_TOLERANCE) -> None:
        self.keys = [("QSTASH_CURRENT_SIGNING_KEY", current_key), ("QSTASH_NEXT_SIGNING_KEY", next_key)]
        self.clock_tolerance = clock_tolerance

    def authenticate(self, token: str, url: str) -> dict[str, Any]:
        """Everything that does not need the body: key, algorithm, iss, exp, nbf, sub, a string body claim."""
        claims = self._decode(token)
        if claims.get("sub") != url:
            raise errors.InvalidJobSignatureError(f"signature is for {claims.get('sub')!r}, not {url!r}")
        if not isinstance(claims.get("body"), str):
            raise errors.InvalidJobSignatureError("signature's 'body' claim is not a string")
        if not isinstance(claims.get("jti"), str) or not claims["jti"]:
            raise errors.InvalidJobSignatureError("signature's 'jti' claim is not a non-empty string")
        return claims

    @staticmethod
    def check_body(claims: Mapping[str, Any], sha256: bytes) -> None:
        """The body claim against the SHA-256 of the body as received."""
        digest = base64.urlsafe_b64encode(sha256).rstrip(b"=")
        claimed = str(claims["body"]).encode("utf-8", "surrogatepass").rstrip(b"=")
        # Compare bytes: compare_digest refuses a str with non-ASCII characters (a TypeError, hence a 500).
        if not hmac.compare_digest(claimed, digest):
            raise errors.InvalidJobSignatureError("signature's body hash does not match the request body")

    def verify(self, token: str, body: bytes, url: str) -> dict[str, Any]:
        """``authenticate`` and ``check_body`` for a body already in memory."""
        claims = self.authenticate(token, url)
        self.check_body(claims, hashlib.sha256(body).digest())
        return claims

    def _decode(self, token: str) -> dict[str, Any]:
        for _, key in self.keys:
            try:
                with warnings.catch_warnings():
                    # Upstash chooses the key length; warning on every delivery would only be noise.
                    warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
                    claims: dict[str, Any] = jwt.decode(
                        token,
                        key,
                        algorithms=["HS256"],
                        issuer="Upstash",
                        leeway=self.clock_tolerance,
                        options={"require": ["iss", "sub", "exp", "nbf", "body", "jti"], "verify_aud": False},
                    )
                return claims
            except jwt.InvalidSignatureError:
                continue  # signed with the other key (rotation): the only failure that tries the next key
            except jwt.ExpiredSignatureError:
                raise errors.InvalidJobSignatureError("signature has expired (exp is in the past)") from None
            except jwt.ImmatureSignatureError:
                raise errors.InvalidJobSignatureError("signature is not valid yet (nbf is in the future)") from None
            except jwt.InvalidIssuerError:
                raise errors.InvalidJobSignatureError("signature's issuer is not Upstash") from None
            except jwt.MissingRequiredClaimError as exc:
                raise errors.InvalidJobSignatureError(f"signature lacks the {exc.claim!r} claim") from None
            except jwt.InvalidAlgorithmError:
                raise errors.InvalidJobSignatureError("signature algorithm is not HS256") from None
            except jwt.InvalidTokenError as exc:
                raise errors.InvalidJobSignatureError(f"Upstash-Signature is not a valid JWT: {exc}") from None
            except (ArithmeticError, TypeError, ValueError) as exc:
                # PyJWT lets a few through, e.g. int(exp) of 1e400 (OverflowError): still a bad token, not a 500.
                raise errors.InvalidJobSignatureError(f"Upstash-Signature has an invalid claim: {exc}") from None
        names = " or ".join(name for name, _ in self.keys)
        raise errors.InvalidJobSignatureError(f"signature does not match {names}")


def check_callback_url(url: str) -> None:
    """Refuse a plain ``http://`` QSTASH_CALLBACK_URL unless it is this machine.

    The signature covers the URL and the body, not the headers that carry the message id, the attempt,
    max_attempts and the job key; only TLS keeps those from being read and changed on the way.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return
    host = (parts.hostname or "").lower()
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost" or host.endswith(".localhost")
    if parts.scheme == "http" and loopback:
        return
    raise errors.ConfigurationError(
        f"QSTASH_CALLBACK_URL {url!r} is not https://: deliveries (and the unsigned headers they carry) would "
        "cross the network readable and changeable; use https:// (plain http:// is accepted only for localhost)"
    )
