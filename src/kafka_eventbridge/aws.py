"""The AWS session every AWS client of the bridge is made from: EventBridge, S3, Glue.

Without ``BRIDGE_AWS_ROLE_ARN`` it is a plain boto3 session: the default credential chain
(IRSA on EKS, environment, profile, instance role), as before.

With it, the bridge works *as that role*: the default chain only provides the source
credentials that call ``sts:AssumeRole`` (with ``BRIDGE_AWS_ROLE_EXTERNAL_ID`` as the
``ExternalId`` a partner's or another account's trust policy asks for, and
``BRIDGE_AWS_ROLE_SESSION_NAME`` as the session name CloudTrail shows), and every client of
the session signs with the assumed credentials. They are botocore's
``DeferredRefreshableCredentials``: assumed on first use, and assumed again before they expire
(botocore refreshes in the background of a call from 15 minutes before expiry, and blocks a
call for it from 10 minutes before), so a bridge that runs for weeks never signs with expired
credentials. The STS client is regional (``AWS_ENDPOINT_URL_STS`` overrides its endpoint, like
any other service's) and makes botocore's standard retries: an assume that keeps failing
raises, and the call that needed it fails like any other call (retried by the bridge; access
denied is fatal).

The Kafka side is not affected: MSK IAM tokens are signed with the pod's own credentials.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    Credentials,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import NoCredentialsError

from kafka_eventbridge.settings import AwsSettings

ASSUME_ROLE_METHOD = "assume-role"
# STS is not on the publish path: botocore's own retries are the right tool there.
_STS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


def session(settings: AwsSettings | None = None) -> boto3.session.Session:
    """A boto3 session with the bridge's credentials.

    ``settings`` default to the ``BRIDGE_AWS_*`` variables of the environment (validated at
    start with every other setting), so that every client is built the same way wherever it is
    made. Each call returns a new session; a role is assumed on a session's first signed call.
    """
    aws = settings if settings is not None else AwsSettings()
    if aws.role_arn is None:
        return boto3.session.Session()
    core = botocore.session.Session()
    core.register_component(
        "credential_provider", CredentialResolver([AssumedRoleProvider(aws, core)])
    )
    return boto3.session.Session(botocore_session=core)


class AssumedRoleProvider(CredentialProvider):
    """Credentials of ``BRIDGE_AWS_ROLE_ARN``, assumed with the default chain's credentials."""

    METHOD = ASSUME_ROLE_METHOD

    def __init__(self, settings: AwsSettings, target: botocore.session.Session) -> None:
        super().__init__()
        if settings.role_arn is None:
            raise ValueError("no role to assume")
        self._role_arn = settings.role_arn
        self._settings = settings
        # The source credentials come from a session of their own: the target session's
        # chain is this provider.
        self._source = botocore.session.Session()
        # STS is regional; with no region configured anywhere, its global endpoint's region.
        self._region = (
            target.get_config_variable("region") or os.environ.get("AWS_REGION") or "us-east-1"
        )

    def load(self) -> Credentials:
        source = self._source.get_credentials()
        if source is None:
            raise NoCredentialsError()
        fetcher = AssumeRoleCredentialFetcher(
            client_creator=self._sts_client,
            source_credentials=source,
            role_arn=self._role_arn,
            extra_args=assume_role_arguments(self._settings),
        )
        return DeferredRefreshableCredentials(
            refresh_using=fetcher.fetch_credentials, method=self.METHOD
        )

    def _sts_client(self, service: str, **kwargs: Any) -> Any:
        kwargs.setdefault("region_name", self._region)
        kwargs.setdefault("config", _STS_CONFIG)
        return self._source.create_client(service, **kwargs)


def assume_role_arguments(settings: AwsSettings) -> dict[str, Any]:
    """The ``AssumeRole`` parameters besides ``RoleArn``."""
    arguments: dict[str, Any] = {
        "RoleSessionName": settings.role_session_name,
        "DurationSeconds": settings.role_duration_seconds,
    }
    if settings.role_external_id is not None:
        arguments["ExternalId"] = settings.role_external_id.get_secret_value()
    return arguments
