"""An OpenID Connect identity provider on loopback, and Apache Kafka that trusts it.

:class:`IdentityProvider` serves what a real one serves to this pair of peers: a token
endpoint for the OAuth client-credentials grant (RFC 6749 §4.4; client authentication by HTTP
Basic or form fields) issuing RS256-signed JWTs, and the JWKS document with the public key.
The tokens are signed here, with ``cryptography``; nothing is mocked on either side: librdkafka
fetches the tokens itself (``sasl.oauthbearer.method=oidc``) and the broker validates them
with Kafka's own ``OAuthBearerValidatorCallbackHandler`` against the JWKS URL.

:class:`OidcApacheKafkaBroker` is :class:`SecuredApacheKafkaBroker` with OAUTHBEARER enabled
on its SASL_SSL listener next to SCRAM and PLAIN (the test helpers keep using SCRAM), expecting
the provider's issuer and the audience ``kafka``. Kafka 4 reads OAuth URLs only when they are
listed in the JVM system property ``org.apache.kafka.sasl.oauthbearer.allowed.urls``.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kafka_eventbridge_testing.brokers import BrokerOptions, SecuredApacheKafkaBroker

AUDIENCE = "kafka"
ALLOWED_URLS_PROPERTY = "org.apache.kafka.sasl.oauthbearer.allowed.urls"
_VALIDATOR = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
_LOGIN_MODULE = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass
class SigningKey:
    """An RSA key and its key id, as a JWKS lists it."""

    kid: str = field(default_factory=lambda: secrets.token_hex(8))
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def jwk(self) -> dict[str, str]:
        numbers = self.key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": _uint(numbers.n),
            "e": _uint(numbers.e),
        }

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        parts = (json.dumps(header).encode(), json.dumps(claims).encode())
        signing_input = ".".join(_b64url(part) for part in parts)
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"


@dataclass
class Client:
    """A registered OAuth client; tokens name it as their subject."""

    client_id: str
    secret: str
    scope: str = "kafka"


class IdentityProvider:
    """Token endpoint (``POST /token``) and JWKS (``GET /jwks``) on a free loopback port.

    ``signing`` is the key tokens are signed with; by default the one the JWKS publishes.
    Set it to another :class:`SigningKey` to issue tokens the broker must refuse.
    """

    def __init__(self, token_lifetime_s: int = 3600) -> None:
        self.published = SigningKey()
        self.signing = self.published
        self.token_lifetime_s = token_lifetime_s
        self.clients: dict[str, Client] = {}
        self.issued: list[dict[str, Any]] = []  # the claims of every token issued
        self.tokens: list[str] = []  # and the tokens themselves (secrets, for leak checks)
        self.refused = 0  # token requests refused (bad client credentials)
        self.jwks_requests = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def issuer(self) -> str:
        return self.url

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks"

    def register(self, client_id: str) -> Client:
        client = Client(client_id, "client-secret-" + secrets.token_hex(12))
        self.clients[client_id] = client
        return client

    def tokens_for(self, client_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [claims for claims in self.issued if claims["sub"] == client_id]

    def start(self) -> IdentityProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- the endpoints

    def _token(self, form: dict[str, str], authorization: str | None) -> tuple[int, Any]:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if authorization and authorization.lower().startswith("basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            client_id, _, secret = decoded.partition(":")
            client_id, secret = urllib.parse.unquote(client_id), urllib.parse.unquote(secret)
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        client = self.clients.get(client_id)
        if client is None or not secrets.compare_digest(client.secret, secret):
            with self._lock:
                self.refused += 1
            return 401, {"error": "invalid_client"}
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": client.client_id,
            "iat": now,
            "nbf": now,
            "exp": now + self.token_lifetime_s,
            "scope": form.get("scope") or client.scope,
            "jti": secrets.token_hex(8),
        }
        token = self.signing.sign(claims)
        with self._lock:
            self.issued.append(claims)
            self.tokens.append(token)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime_s}
        return 200, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/jwks":
                    self._reply(404, {"error": "not_found"})
                    return
                with provider._lock:
                    provider.jwks_requests += 1
                self._reply(200, {"keys": [provider.published.jwk()]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                if self.path.split("?")[0] != "/token":
                    self._reply(404, {"error": "not_found"})
                    return
                form = dict(urllib.parse.parse_qsl(body))
                self._reply(*provider._token(form, self.headers.get("Authorization")))

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


class OidcApacheKafkaBroker(SecuredApacheKafkaBroker):
    """The secured broker, also taking OAUTHBEARER tokens that ``provider`` signed.

    ``reauth_ms`` bounds an OAUTHBEARER session (KIP-368): the broker closes a connection that
    has not authenticated again with a fresh token within it, so a client that does not refresh
    its token is cut off.
    """

    _state_prefix: ClassVar[str] = "kafka-eventbridge-apache-oidc-"

    def __init__(
        self,
        provider: IdentityProvider,
        options: BrokerOptions | None = None,
        *,
        reauth_ms: int | None = None,
    ) -> None:
        super().__init__(options)
        self.provider = provider
        self.reauth_ms = reauth_ms

    def oidc_config(self, client: Client) -> dict[str, str]:
        """librdkafka settings to log in as ``client`` with OIDC client credentials."""
        return {
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(self.tls.ca),
            "sasl.mechanism": "OAUTHBEARER",
            "sasl.oauthbearer.method": "oidc",
            "sasl.oauthbearer.client.id": client.client_id,
            "sasl.oauthbearer.client.secret": client.secret,
            "sasl.oauthbearer.token.endpoint.url": self.provider.token_url,
            "sasl.oauthbearer.scope": client.scope,
        }

    def _prepare(self, state_dir: Path) -> list[str]:
        argv = super()._prepare(state_dir)
        allowed = f"{self.provider.jwks_url},{self.provider.token_url}"
        return [argv[0], f"-D{ALLOWED_URLS_PROPERTY}={allowed}", *argv[1:]]

    def _server_properties(self, data_dir: Path) -> dict[str, str]:
        properties = super()._server_properties(data_dir)
        prefix = "listener.name.sasl_ssl.oauthbearer."
        properties["sasl.enabled.mechanisms"] += ",OAUTHBEARER"
        properties.update(
            {
                f"{prefix}sasl.jaas.config": _LOGIN_MODULE,
                f"{prefix}sasl.server.callback.handler.class": _VALIDATOR,
                "sasl.oauthbearer.jwks.endpoint.url": self.provider.jwks_url,
                "sasl.oauthbearer.expected.audience": AUDIENCE,
                "sasl.oauthbearer.expected.issuer": self.provider.issuer,
            }
        )
        if self.reauth_ms is not None:
            properties[f"{prefix}connections.max.reauth.ms"] = str(self.reauth_ms)
        return properties
