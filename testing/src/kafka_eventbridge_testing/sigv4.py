"""SigV4 verification from first principles, for the stand-in.

A request passes only if its ``Authorization`` header carries the signature this module computes
itself from the request as received: the canonical request (method, URI, query, the signed
headers, the payload hash), the string to sign (algorithm, ``x-amz-date``, credential scope, the
canonical request's hash) and the HMAC-SHA256 key chain from the secret the test knows
(``AWS4<secret>`` → date → region → service → ``aws4_request``). Nothing here comes from botocore
or awscrt, so a signer's bug cannot hide behind the same bug in the checker.

Reference: "Create a signed AWS API request" in the IAM user guide (Signature Version 4).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Final

ALGORITHM: Final = "AWS4-HMAC-SHA256"
SIGV4A_ALGORITHM: Final = "AWS4-ECDSA-P256-SHA256"
UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
MAX_SKEW: Final = timedelta(minutes=15)

_AUTHORIZATION = re.compile(
    r"(?P<algorithm>[A-Z0-9-]+) Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]+)"
)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: the status, error code and message the service would send."""

    status: int
    code: str
    message: str


@dataclass(frozen=True)
class _Authorization:
    algorithm: str
    credential: str  # as sent: AKID/day[/region]/service/aws4_request
    access_key: str
    day: str
    region: str  # SigV4a: the region set
    service: str
    signed: list[str]
    signature: str


def verify(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    credentials: Mapping[str, str],
    now: datetime,
    region: str,
) -> Refusal | None:
    """None when ``Authorization`` is a valid SigV4 signature of this request, else why not.

    ``target`` is the request line's target (path and query, as sent); ``headers`` have
    lower-case names. Services are told apart by the scope's service name: ``s3`` keeps its
    path as sent (single URI encoding), every other service encodes it once more.
    """
    auth = _authorization(headers, region)
    if isinstance(auth, Refusal):
        return auth
    secret = credentials.get(auth.access_key)
    if secret is None:
        return Refusal(
            403, "UnrecognizedClientException", "The security token included is invalid."
        )
    problem = _check_time(headers.get("x-amz-date", ""), auth.day, now)
    if problem is not None:
        return problem
    payload_hash = _payload_hash(headers, body)
    if payload_hash is None:
        return Refusal(400, "XAmzContentSHA256Mismatch", "The payload hash does not match")
    canonical = canonical_request(
        method, target, headers, auth.signed, payload_hash=payload_hash, service=auth.service
    )
    amz_date = headers["x-amz-date"]
    if auth.algorithm == SIGV4A_ALGORITHM:
        valid = _sigv4a_valid(auth, secret, amz_date, canonical)
    else:
        expected = signature(secret, amz_date, auth.credential, canonical)
        valid = hmac.compare_digest(expected, auth.signature)
    if not valid:
        return Refusal(
            403,
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        )
    return None


def _authorization(headers: Mapping[str, str], region: str) -> _Authorization | Refusal:
    """The parts of the ``Authorization`` header, or why it cannot be one of ours."""
    match = _AUTHORIZATION.fullmatch(headers.get("authorization", "").strip())
    if match is None:
        return Refusal(403, "MissingAuthenticationTokenException", "Missing or malformed auth")
    algorithm = match["algorithm"]
    scope = match["credential"].split("/")
    if algorithm == SIGV4A_ALGORITHM and len(scope) == 4:
        # SigV4a: no region in the scope; the region set is a signed header instead.
        scope.insert(2, headers.get("x-amz-region-set", ""))
        if not _region_set_covers(scope[2], region):
            return Refusal(403, "InvalidSignatureException", f"Region set excludes {region}")
    elif algorithm != ALGORITHM or len(scope) != 5:
        return Refusal(403, "IncompleteSignatureException", "Unsupported algorithm or scope")
    elif scope[2] != region:
        return Refusal(403, "InvalidSignatureException", f"Credential should be scoped to {region}")
    signed = match["signed"].split(";")
    if scope[4] != "aws4_request" or "host" not in signed or not set(signed) <= set(headers):
        return Refusal(403, "IncompleteSignatureException", "Malformed scope or signed headers")
    return _Authorization(
        algorithm,
        match["credential"],
        scope[0],
        scope[1],
        scope[2],
        scope[3],
        signed,
        match["signature"],
    )


@lru_cache(maxsize=64)
def _signed_at(amz_date: str) -> datetime | None:
    """``X-Amz-Date`` as a time; None when malformed. Cached: a client sends the same
    stamp for every call of a second, and ``strptime`` was 5% of the stand-in's CPU."""
    try:
        return datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _check_time(amz_date: str, day: str, now: datetime) -> Refusal | None:
    signed_at = _signed_at(amz_date)
    if signed_at is None:
        return Refusal(403, "IncompleteSignatureException", "X-Amz-Date is missing or malformed")
    if amz_date[:8] != day:
        return Refusal(403, "InvalidSignatureException", "Date in credential scope differs")
    if abs(now - signed_at) > MAX_SKEW:
        # The service's words; SDKs that correct their clock look for "Signature expired".
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        return Refusal(
            400,
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than {stamp} (15 min skew allowed)",
        )
    return None


def _payload_hash(headers: Mapping[str, str], body: bytes) -> str | None:
    """The payload hash to sign with; None when a declared hash does not match the body."""
    actual = hashlib.sha256(body).hexdigest()
    declared = headers.get("x-amz-content-sha256")
    if declared is None:
        return actual
    if declared == UNSIGNED_PAYLOAD:
        return declared
    return declared if declared == actual else None


def canonical_request(
    method: str,
    target: str,
    headers: Mapping[str, str],
    signed: list[str],
    *,
    payload_hash: str,
    service: str,
) -> str:
    path, _, query = target.partition("?")
    uri = path if service == "s3" else urllib.parse.quote(path, safe="/~")
    header_lines = "".join(f"{name}:{_SPACES.sub(' ', headers[name].strip())}\n" for name in signed)
    return "\n".join(
        [method, uri, _canonical_query(query), header_lines, ";".join(signed), payload_hash]
    )


def _canonical_query(query: str) -> str:
    pairs = []
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        pairs.append(
            (
                urllib.parse.quote(urllib.parse.unquote(name), safe="-_.~"),
                urllib.parse.quote(urllib.parse.unquote(value), safe="-_.~"),
            )
        )
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def signature(secret: str, amz_date: str, credential: str, canonical: str) -> str:
    """The hex signature of a canonical request, from the secret through the key chain."""
    _, day, region, service, terminator = credential.split("/")
    scope = f"{day}/{region}/{service}/{terminator}"
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _signing_key(secret, day, region, service, terminator)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


@lru_cache(maxsize=256)
def _signing_key(secret: str, *scope: str) -> bytes:
    """The HMAC chain from the secret through the scope; the same all day (cached)."""
    key = f"AWS4{secret}".encode()
    for part in scope:
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _region_set_covers(region_set: str, region: str) -> bool:
    return any(r.strip() in ("*", region) for r in region_set.split(","))


# NIST P-256's group order: SigV4a's private key is derived below it.
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def sigv4a_private_value(access_key: str, secret: str) -> int:
    """SigV4a's P-256 private key, derived from the secret (NIST SP 800-108 KDF in counter
    mode with HMAC-SHA256, as the SDKs do): the first candidate below the order minus one."""
    key = f"AWS4A{secret}".encode()
    for counter in range(1, 255):
        fixed = (
            (1).to_bytes(4, "big")
            + SIGV4A_ALGORITHM.encode()
            + b"\x00"
            + access_key.encode()
            + bytes([counter])
            + (256).to_bytes(4, "big")
        )
        candidate = int.from_bytes(hmac.new(key, fixed, hashlib.sha256).digest(), "big")
        if candidate <= _P256_ORDER - 2:
            return candidate + 1
    raise ValueError("no SigV4a key for these credentials")


def _sigv4a_valid(auth: _Authorization, secret: str, amz_date: str, canonical: str) -> bool:
    """An ECDSA P-256 signature over the string to sign, checked with the public key of the
    key pair the secret derives (``cryptography`` does the curve arithmetic)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    string_to_sign = "\n".join(
        [
            SIGV4A_ALGORITHM,
            amz_date,
            f"{auth.day}/{auth.service}/aws4_request",
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    private = ec.derive_private_key(sigv4a_private_value(auth.access_key, secret), ec.SECP256R1())
    try:
        private.public_key().verify(
            bytes.fromhex(auth.signature), string_to_sign.encode(), ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, ValueError):
        return False
    return True
