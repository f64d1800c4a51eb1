"""Kafka security: what the bridge adds to librdkafka's own TLS and SASL support.

TLS (CA, client certificate and key, hostname verification), SASL PLAIN and SCRAM are plain
librdkafka properties: they arrive through ``BRIDGE_KAFKA_<PROPERTY>`` unchanged and reach the
consumer and the dead-letter producer alike. This module adds the rest:

* **Amazon MSK IAM.** With ``BRIDGE_MSK_IAM=true`` the clients log in with SASL OAUTHBEARER,
  and an ``oauth_cb`` signs a token with AWS's ``aws-msk-iam-sasl-signer-python`` from the
  default credential chain (IRSA on EKS, environment, profile, instance role).
* **OAUTHBEARER with OIDC.** ``BRIDGE_KAFKA_SASL_OAUTHBEARER_METHOD=oidc`` is librdkafka's
  own client-credentials flow: it fetches tokens from the identity provider's token endpoint
  and refreshes them before they expire. :func:`oidc_problems` checks the settings it needs at
  start, with the variables' names; the client secret is masked like every secret.
* **Failures that are fatal.** Authentication, authorization and TLS errors are not retried
  away by waiting: :func:`fatal_error` turns them into one readable line naming what to fix.
* **Logs without secrets.** librdkafka's log lines go through :func:`client_logger`, whose
  filter masks every known secret value (librdkafka masks its own ``[redacted]`` properties;
  this is the second lock) and keeps them at warning at most: librdkafka reports the same
  errors through ``error_cb``, where the bridge decides what is fatal, so that a fatal error
  stays one ``error`` line.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import botocore.session
from botocore.credentials import CredentialProvider, Credentials
from botocore.exceptions import NoCredentialsError
from confluent_kafka import KafkaError

from kafka_eventbridge.errors import ConfigError, FatalError
from kafka_eventbridge.settings import is_secret_property, property_variable

log = logging.getLogger(__name__)

ENV_MSK_IAM = "BRIDGE_MSK_IAM"
ENV_MSK_IAM_REGION = "BRIDGE_MSK_IAM_REGION"
# Where the MSK region comes from when BRIDGE_MSK_IAM_REGION is not set, first match wins.
REGION_VARIABLES = (
    ENV_MSK_IAM_REGION,
    "BRIDGE_EVENTBRIDGE_REGION",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)
# Secrets of the AWS SDK that must never show in logs either.
AWS_SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})

AUTHENTICATION_CODES = frozenset(
    {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED}
)
AUTHORIZATION_CODES = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    }
)
TLS_CODES = frozenset({KafkaError._SSL})
# Errors that no amount of waiting fixes: stop and let Kubernetes restart with backoff.
FATAL_CODES = AUTHENTICATION_CODES | AUTHORIZATION_CODES | TLS_CODES
# A broker that refuses the client's certificate (mutual TLS) answers with a TLS alert, which
# librdkafka reports as a transport error, like a network failure; its text tells them apart.
_TLS_ALERT = "ssl/tls alert"

_HINTS = {
    "authentication": "check BRIDGE_KAFKA_SASL_MECHANISM, BRIDGE_KAFKA_SASL_USERNAME and "
    "BRIDGE_KAFKA_SASL_PASSWORD (or, with BRIDGE_MSK_IAM, the role's credentials and policy)",
    "authentication-oidc": "check BRIDGE_KAFKA_SASL_OAUTHBEARER_CLIENT_ID, "
    "BRIDGE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET, BRIDGE_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL "
    "and BRIDGE_KAFKA_SASL_OAUTHBEARER_SCOPE, and that the broker trusts the identity provider "
    "(its JWKS URL, expected issuer and audience)",
    "authorization": "grant the bridge's principal access to the topics, the group and the "
    "dead-letter topic (Kafka ACLs, or the MSK IAM policy)",
    "tls": "check BRIDGE_KAFKA_SSL_CA_LOCATION, that the broker's certificate names the host "
    "in BRIDGE_KAFKA_BOOTSTRAP_SERVERS, and for mutual TLS the client certificate "
    "(BRIDGE_KAFKA_SSL_CERTIFICATE_LOCATION, BRIDGE_KAFKA_SSL_KEY_LOCATION)",
}


# -- configuration -------------------------------------------------------------------------


def security_config(
    properties: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """What the bridge adds to the user's librdkafka properties for authentication.

    OIDC settings (``sasl.oauthbearer.method=oidc``) are checked here and left to librdkafka.
    Empty unless MSK IAM is on; then the SASL settings it implies and the token callback,
    after signing a first token here, so that missing credentials are one readable line at
    start rather than a timeout inside the client. Also registers the secret values of
    ``properties`` (and the AWS secret key) with the client log filter.
    """
    env = os.environ if environ is None else environ
    remember_secrets(
        [value for name, value in properties.items() if is_secret_property(name)]
        + [env[name] for name in AWS_SECRET_VARIABLES if env.get(name)]
    )
    if not msk_iam_enabled(env):
        oidc = oidc_problems(properties)
        if oidc:
            raise ConfigError(oidc)
        _AUTHENTICATION_HINT[0] = (
            "authentication-oidc" if oidc_enabled(properties) else "authentication"
        )
        return {}
    problems = _msk_iam_conflicts(properties)
    region = msk_region(env)
    if region is None:
        problems.append(
            f"{ENV_MSK_IAM}: needs the cluster's AWS region; set one of "
            + ", ".join(REGION_VARIABLES)
        )
    if problems or region is None:
        raise ConfigError(problems)
    provider = MskIamTokenProvider(region)
    try:
        provider()
    except Exception as exc:
        raise ConfigError(
            [
                f"{ENV_MSK_IAM}: cannot sign an MSK IAM token for {region}: "
                f"{type(exc).__name__}: {exc} (credentials come from the default AWS chain: "
                "IRSA, environment, profile, instance role)"
            ]
        ) from None
    return {"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER", "oauth_cb": provider}


def msk_iam_enabled(environ: Mapping[str, str]) -> bool:
    """``BRIDGE_MSK_IAM``: true/false (also 1/0, yes/no, on/off); anything else is refused."""
    raw = environ.get(ENV_MSK_IAM, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError([f"{ENV_MSK_IAM}: must be true or false (got {raw!r})"])


def msk_region(environ: Mapping[str, str]) -> str | None:
    """The region the MSK tokens are signed for (the cluster's region)."""
    for name in REGION_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


_MSK_IAM_NEEDS = {"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER"}


def _msk_iam_conflicts(properties: Mapping[str, str]) -> list[str]:
    problems = [
        f"{property_variable(name)}: must be {needed} with {ENV_MSK_IAM}=true "
        f"(got {properties[name]!r})"
        for name, needed in _MSK_IAM_NEEDS.items()
        if properties.get(name, needed).upper() != needed
    ]
    if properties.get("sasl.oauthbearer.method", "default").lower() != "default":
        problems.append(
            f"{property_variable('sasl.oauthbearer.method')}: OIDC and {ENV_MSK_IAM}=true "
            "exclude each other; MSK IAM tokens are signed by the bridge"
        )
    return problems


# -- OIDC ----------------------------------------------------------------------------------

# What librdkafka's OIDC flow needs, by grant type (the JWT-bearer grant signs an assertion
# instead of sending a client secret).
_OIDC_REQUIRED = {
    "client_credentials": (
        "sasl.oauthbearer.token.endpoint.url",
        "sasl.oauthbearer.client.id",
        "sasl.oauthbearer.client.secret",
    ),
    "urn:ietf:params:oauth:grant-type:jwt-bearer": ("sasl.oauthbearer.token.endpoint.url",),
}
_SASL_PROTOCOLS = ("SASL_SSL", "SASL_PLAINTEXT")
# Which hint a refused login gets: OIDC settings, or user and password.
_AUTHENTICATION_HINT = ["authentication"]


def oidc_enabled(properties: Mapping[str, str]) -> bool:
    """``sasl.oauthbearer.method=oidc``: librdkafka fetches tokens from a token endpoint."""
    return properties.get("sasl.oauthbearer.method", "default").strip().lower() == "oidc"


def oidc_problems(properties: Mapping[str, str]) -> list[str]:
    """One line per missing or contradicting setting of the OIDC flow; none when it is off."""
    if not oidc_enabled(properties):
        return []
    why = "with BRIDGE_KAFKA_SASL_OAUTHBEARER_METHOD=oidc"
    problems = []
    mechanism = properties.get("sasl.mechanism", "GSSAPI")
    if mechanism.upper() != "OAUTHBEARER":
        problems.append(
            f"BRIDGE_KAFKA_SASL_MECHANISM: must be OAUTHBEARER {why} (got {mechanism!r})"
        )
    protocol = properties.get("security.protocol", "plaintext")
    if protocol.upper() not in _SASL_PROTOCOLS:
        problems.append(
            f"BRIDGE_KAFKA_SECURITY_PROTOCOL: must be SASL_SSL (or SASL_PLAINTEXT) {why} "
            f"(got {protocol!r})"
        )
    grant = properties.get("sasl.oauthbearer.grant.type", "client_credentials")
    required = _OIDC_REQUIRED.get(grant, _OIDC_REQUIRED["client_credentials"][:1])
    problems.extend(
        f"{property_variable(name)}: required {why}"
        for name in required
        if not properties.get(name, "").strip()
    )
    url = properties.get("sasl.oauthbearer.token.endpoint.url", "").strip()
    if url and urlsplit(url).scheme not in ("https", "http"):
        problems.append(
            "BRIDGE_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL: must be an https:// URL "
            f"(got scheme {urlsplit(url).scheme!r})"
        )
    elif url.startswith("http://") and urlsplit(url).hostname not in _LOOPBACK:
        log.warning(
            "the OIDC token endpoint is plain http: the client secret and the tokens travel "
            "unencrypted (BRIDGE_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL)"
        )
    return problems


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


# -- the MSK IAM token ---------------------------------------------------------------------

Signer = Callable[[str], tuple[str, int]]  # region -> (token, expiry in epoch milliseconds)

# A failed refresh keeps the last token while it has this long left: librdkafka asks again
# (at 80% of what is left), so a passing hiccup of the credential source is ridden out.
REFRESH_MARGIN_SECONDS = 30.0


class _SessionCredentials(CredentialProvider):
    """The default credential chain of one botocore session, for the signer.

    One session for the process: credentials are looked up once and refreshed by botocore
    (IRSA, instance roles) rather than resolved anew for every token.
    """

    METHOD = "kafka-eventbridge"

    def __init__(self) -> None:
        super().__init__()
        self._session = botocore.session.Session()

    def load(self) -> Credentials:
        credentials = self._session.get_credentials()
        if credentials is None:
            raise NoCredentialsError()
        return credentials


def aws_signer() -> Signer:
    """AWS's ``aws-msk-iam-sasl-signer-python`` over the default credential chain."""
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

    credentials = _SessionCredentials()

    def sign(region: str) -> tuple[str, int]:
        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(
            region, credentials
        )
        return str(token), int(expiry_ms)

    return sign


class MskIamTokenProvider:
    """confluent-kafka's ``oauth_cb`` for Amazon MSK IAM.

    Called with ``sasl.oauthbearer.config`` when the client is created and again before the
    token expires (librdkafka refreshes at 80% of its lifetime; MSK tokens live 15 minutes),
    on the thread that polls the client. Returns ``(token, expiry)`` with the expiry in epoch
    *seconds*, as confluent-kafka expects (the signer gives milliseconds).
    """

    def __init__(
        self,
        region: str,
        signer: Signer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.region = region
        self._signer = signer or aws_signer()
        self._clock = clock
        self._last: tuple[str, float] | None = None

    def __call__(self, _oauth_config: str | None = None) -> tuple[str, float]:
        try:
            token, expiry_ms = self._signer(self.region)
        except Exception as exc:
            return self._previous(exc)
        _FILTER.tokens.append(token)
        self._last = (token, expiry_ms / 1000)
        return self._last

    def _previous(self, exc: Exception) -> tuple[str, float]:
        """The last token while it is still good; otherwise give up (librdkafka reports it)."""
        if self._last is None:
            raise exc  # the first token: security_config() reports why
        reason = f"{type(exc).__name__}: {exc}"
        if self._last[1] - self._clock() > REFRESH_MARGIN_SECONDS:
            log.warning("MSK IAM token refresh failed, the current token is kept: %s", reason)
            return self._last
        log.warning("MSK IAM token cannot be signed and the current one expires: %s", reason)
        raise exc


# -- failures ------------------------------------------------------------------------------


def _kind(err: KafkaError) -> str | None:
    """Which security failure ``err`` is, if it is one."""
    code = err.code()
    if code in AUTHENTICATION_CODES:
        return "authentication"
    if code in AUTHORIZATION_CODES:
        return "authorization"
    if code in TLS_CODES or (
        code == KafkaError._TRANSPORT and _TLS_ALERT in str(err.str()).lower()
    ):
        return "tls"
    return None


def is_security_failure(err: KafkaError) -> bool:
    """Authentication, authorization or TLS refused: waiting does not fix it."""
    return _kind(err) is not None


def is_fatal(err: KafkaError) -> bool:
    """True for errors that waiting does not fix (librdkafka's fatal ones included)."""
    return bool(err.fatal()) or is_security_failure(err)


def fatal_error(err: KafkaError, client: str) -> FatalError:
    """A fatal Kafka error as one readable line: what failed, and which settings to check."""
    kind = _kind(err)
    if kind is None:
        return FatalError(err.name(), f"{client}: {err.str()}")
    label = "TLS" if kind == "tls" else kind
    hint = _HINTS[_AUTHENTICATION_HINT[0] if kind == "authentication" else kind]
    return FatalError(err.name(), f"{client}: Kafka {label} failed: {err.str()}; {hint}")


# -- logging -------------------------------------------------------------------------------

CLIENT_LOGGER = "kafka_eventbridge.librdkafka"
_MAX_TOKENS = 4  # tokens remembered for masking: the current one and a few before it


class _ClientLogFilter(logging.Filter):
    """Masks known secret values in librdkafka's lines and keeps them at warning at most."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        self.tokens: deque[str] = deque(maxlen=_MAX_TOKENS)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        message = record.getMessage()
        masked = message
        for secret in (*self.secrets, *self.tokens):
            masked = masked.replace(secret, "***")
        if masked != message:
            record.msg, record.args = masked, None
        return True


_FILTER = _ClientLogFilter()
# Masking very short values would mangle ordinary words; real secrets are longer.
_MIN_SECRET_LENGTH = 4


def remember_secrets(values: list[str]) -> None:
    """Values that must never appear in librdkafka's log lines."""
    _FILTER.secrets.update(value for value in values if len(value) >= _MIN_SECRET_LENGTH)


def client_logger() -> logging.Logger:
    """The logger handed to confluent-kafka clients (``logger=``), with the filter above."""
    logger = logging.getLogger(CLIENT_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
