"""AWS peers for the role and Glue tests: moto's STS, and an endpoint that checks signatures.

moto does not check who signed a request, so the question "which credentials sign the
bridge's calls?" is answered by :class:`SigningEndpoint`: a loopback HTTP server standing in
for EventBridge, S3 or Glue that verifies each request's SigV4 signature with the secret of
the access key it names (looked up in moto's STS, which issued it), and records the key.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kafka_eventbridge_testing import free_port

Secrets = Callable[[str], tuple[str, str | None] | None]  # access key -> (secret, token)


def reset_moto(url: str) -> None:
    """Forget everything moto holds: its backends are per process, shared by its servers."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))  # noqa: S310


def assumed_role_secrets(access_key: str) -> tuple[str, str] | None:
    """The secret and session token moto's STS issued with an access key, if it did."""
    role = assumed_role(access_key)
    return None if role is None else (role.secret_access_key, role.session_token)


def assumed_role(access_key: str) -> Any:
    """moto's record of the role session an access key belongs to, if any."""
    return next((role for role in assumed_roles() if role.access_key_id == access_key), None)


def assumed_roles() -> list[Any]:
    """Every role session moto's STS (in this process) has handed out, in any account."""
    from moto.sts.models import sts_backends

    return [
        role
        for account in list(sts_backends.keys())
        for role in sts_backends[account]["aws"].assumed_roles
    ]


@dataclass
class SignedCall:
    service: str
    access_key: str
    session_token: str | None
    valid: bool


@dataclass
class SigningEndpoint:
    """Answers every call with ``reply`` and records who signed it, and whether correctly."""

    secrets: Secrets
    reply: Callable[[str, bytes], tuple[int, bytes]]
    calls: list[SignedCall] = field(default_factory=list)
    url: str = ""

    def verify(self, method: str, path: str, headers: dict[str, str], body: bytes) -> SignedCall:
        authorization = headers.get("authorization", "")
        # AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request,
        #   SignedHeaders=a;b;c, Signature=hex
        fields = dict(
            part.strip().split("=", 1) for part in authorization.split(" ", 1)[-1].split(",")
        )
        access_key, _date, region, service, _ = fields["Credential"].split("/")
        signed = fields["SignedHeaders"].split(";")
        known = self.secrets(access_key)
        token = headers.get("x-amz-security-token")
        valid = False
        if known is not None and token == known[1]:
            request = AWSRequest(
                method, self.url + path, {name: headers[name] for name in signed}, body
            )
            request.context["timestamp"] = headers["x-amz-date"]
            signer = SigV4Auth(Credentials(access_key, known[0], known[1]), service, region)
            canonical = signer.canonical_request(request)
            expected = signer.signature(signer.string_to_sign(request, canonical), request)
            valid = expected == fields["Signature"]
        call = SignedCall(service, access_key, token, valid)
        self.calls.append(call)
        return call


@contextlib.contextmanager
def signing_endpoint(
    secrets: Secrets, reply: Callable[[str, bytes], tuple[int, bytes]]
) -> Iterator[SigningEndpoint]:
    """A :class:`SigningEndpoint` on a free loopback port."""
    endpoint = SigningEndpoint(secrets, reply)

    class Handler(http.server.BaseHTTPRequestHandler):
        # Keep-alive connections, as AWS endpoints keep them (HTTP/1.0 closes each one after its
        # answer, which a pooling client may only notice when it sends the next request).
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            call = endpoint.verify(self.command, self.path, headers, body)
            status, payload = (403, b"{}") if not call.valid else reply(call.service, body)
            self.send_response(status)
            self.send_header("content-length", str(len(payload)))
            self.send_header("content-type", "application/x-amz-json-1.1")
            self.end_headers()
            self.wfile.write(payload)

        do_POST = do_PUT = do_GET = do_HEAD = _answer  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    endpoint.url = f"http://127.0.0.1:{port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
