"""Classification: what a publish result means for each entry.

Every outcome of a ``PutPartnerEvents`` / ``PutEvents`` call lands in one of three kinds
(DESIGN.md, "Semantics" 2):

* retryable: throttling, 5xx, timeouts, connection errors, retryable entry codes. Only
  the affected entries are sent again, after a backoff.
* permanent: this entry will never be accepted (a permanent entry code). Dead-letter it.
* fatal: the configuration or the account is wrong. Stop; never dead-letter a stream.

A 200 response can still fail entries: ``FailedEntryCount`` and per-entry ``ErrorCode``,
in request order. An entry is accepted only by its own result: a 2xx answer whose
``Entries`` do not match the request one for one (``200 {}`` from a proxy or a misrouted
endpoint) is a failed call, :data:`INVALID_RESPONSE`, retried like any failed call; the
loop makes it fatal when it persists. Results that cannot be attributed to an entry are
retried, never dropped. A request the service refuses as a whole (``ValidationException``)
is split so the one bad entry is found and dead-lettered while the others go through.

Pure: takes the response or the exception, returns a :class:`BatchOutcome`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from kafka_eventbridge.batching import Pending
from kafka_eventbridge.errors import FatalError

INVALID_RESPONSE = "InvalidResponse"  # a 2xx answer without one result per entry


class Kind(Enum):
    RETRYABLE = "retryable"
    PERMANENT = "permanent"
    FATAL = "fatal"
    SPLIT = "split"  # the request was refused as a whole: send its entries one by one


ENTRY_CODES: dict[str, Kind] = {
    "ThrottlingException": Kind.RETRYABLE,
    "InternalFailure": Kind.RETRYABLE,
    "InternalException": Kind.RETRYABLE,
    "ServiceUnavailable": Kind.RETRYABLE,
    "MalformedDetail": Kind.PERMANENT,
    "InvalidArgument": Kind.PERMANENT,
    "RedactionFailure": Kind.PERMANENT,
    "NotAuthorizedForDetailTypeException": Kind.PERMANENT,
    "ValidationException": Kind.PERMANENT,
    "AccessDeniedException": Kind.FATAL,
    "NotAuthorizedForSourceException": Kind.FATAL,
    "InvalidAccountIdException": Kind.FATAL,
    "ResourceNotFoundException": Kind.FATAL,
}

CALL_CODES: dict[str, Kind] = {
    # Throttling and server-side trouble: back off and send again.
    "ThrottlingException": Kind.RETRYABLE,
    "Throttling": Kind.RETRYABLE,
    "TooManyRequestsException": Kind.RETRYABLE,
    "RequestLimitExceeded": Kind.RETRYABLE,
    "InternalException": Kind.RETRYABLE,
    "InternalFailure": Kind.RETRYABLE,
    "ServiceUnavailable": Kind.RETRYABLE,
    "RequestTimeout": Kind.RETRYABLE,
    "ExpiredTokenException": Kind.RETRYABLE,  # credentials refresh (IRSA) and then succeed
    # The request as a whole was refused: one of its entries is bad.
    "ValidationException": Kind.SPLIT,
    "SerializationException": Kind.SPLIT,
    # Wrong account, credentials, permissions or target: nothing will ever get through.
    "AccessDeniedException": Kind.FATAL,
    "AccessDenied": Kind.FATAL,
    "UnrecognizedClientException": Kind.FATAL,
    "InvalidClientTokenId": Kind.FATAL,
    "InvalidSignatureException": Kind.FATAL,
    "SignatureDoesNotMatch": Kind.FATAL,
    "IncompleteSignature": Kind.FATAL,
    "MissingAuthenticationToken": Kind.FATAL,
    "ResourceNotFoundException": Kind.FATAL,
    "OperationDisabledException": Kind.FATAL,
    "NotAuthorizedForSourceException": Kind.FATAL,
    "InvalidAccountIdException": Kind.FATAL,
    "UnknownOperationException": Kind.FATAL,
    # S3, for offloaded payloads: the bucket or the right to write to it is missing.
    "NoSuchBucket": Kind.FATAL,
    "InvalidAccessKeyId": Kind.FATAL,
    "AllAccessDisabled": Kind.FATAL,
}


def entry_kind(code: str) -> Kind:
    """An unknown entry code is permanent: retrying it forever would stall the partition,
    and the dead-letter ratio guard stops the bridge if it hits every entry."""
    return ENTRY_CODES.get(code, Kind.PERMANENT)


@dataclass
class BatchOutcome:
    """What became of each entry of one request."""

    accepted: list[Pending] = field(default_factory=list)
    retry: list[tuple[Pending, str]] = field(default_factory=list)
    dead: list[tuple[Pending, str, str]] = field(default_factory=list)
    split: list[Pending] = field(default_factory=list)
    fatal: FatalError | None = None
    call_error: str | None = None  # the code of a failed call, None for a 200

    @property
    def invalid_response(self) -> bool:
        return self.call_error == INVALID_RESPONSE

    @property
    def label(self) -> str:
        """The ``outcome`` label of ``publish_requests_total``."""
        if self.invalid_response:
            return "invalid_response"
        if self.call_error is not None or self.fatal is not None:
            return "error"
        return "success" if not (self.retry or self.dead) else "partial_failure"


def classify_response(batch: Sequence[Pending], response: dict[str, Any]) -> BatchOutcome:
    """Split a 200 response into accepted, retryable, permanent and fatal entries."""
    results = response.get("Entries")
    if not isinstance(results, list) or len(results) != len(batch):
        # Not EventBridge's answer to this request (AWS documents one result per entry, in
        # request order): nothing here says any entry was accepted.
        outcome = BatchOutcome(call_error=INVALID_RESPONSE)
        outcome.retry.extend((item, INVALID_RESPONSE) for item in batch)
        return outcome
    outcome = BatchOutcome()
    for item, result in zip(batch, results, strict=True):
        if not isinstance(result, dict):
            outcome.retry.append((item, "UnattributedFailure"))
            continue
        code = result.get("ErrorCode")
        if code:
            _place(outcome, item, code, result.get("ErrorMessage") or "")
        elif result.get("EventId") is not None:
            outcome.accepted.append(item)
        else:
            # Neither an EventId nor an error: not known to be accepted, so send it again.
            outcome.retry.append((item, "UnattributedFailure"))
    return outcome


def _place(outcome: BatchOutcome, item: Pending, code: str, message: str) -> None:
    kind = entry_kind(code)
    if kind is Kind.FATAL and item.entry.record_target:
        # The source or the bus came from the record: this record names a target the
        # bridge may not write to. Stopping would stop at the same record after every
        # restart; a constant target is the configuration's fault and stays fatal.
        kind = Kind.PERMANENT
    if kind is Kind.RETRYABLE:
        outcome.retry.append((item, code))
    elif kind is Kind.PERMANENT:
        outcome.dead.append((item, code, message))
    elif outcome.fatal is None:
        outcome.fatal = FatalError(code, f"EventBridge refused an entry: {message or code}")


def classify_exception(batch: Sequence[Pending], exc: Exception) -> BatchOutcome:
    """Map a failed call to an outcome for every entry of its batch."""
    code, kind, message = call_failure(exc)
    outcome = BatchOutcome(call_error=code)
    if kind is Kind.FATAL:
        outcome.fatal = FatalError(code, message)
    elif kind is Kind.SPLIT and len(batch) > 1:
        outcome.split.extend(batch)
    elif kind is Kind.SPLIT:
        outcome.dead.extend((item, code, message) for item in batch)
    else:
        outcome.retry.extend((item, code) for item in batch)
    return outcome


def call_failure(exc: Exception) -> tuple[str, Kind, str]:
    """(error code, kind, readable message) of an exception raised by a publish call."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or exc)
        # Unknown codes are retried: 5xx and 429 are the server's trouble, and for an
        # unknown 4xx a visible stall (lag grows, alerts fire) beats dropping a stream.
        return code, CALL_CODES.get(code, Kind.RETRYABLE), message
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return "NoCredentials", Kind.FATAL, f"no usable AWS credentials: {exc}"
    if isinstance(exc, ParamValidationError):
        return "ParamValidation", Kind.SPLIT, str(exc)
    if isinstance(exc, ConnectionError | HTTPClientError):
        return type(exc).__name__, Kind.RETRYABLE, str(exc)
    if isinstance(exc, BotoCoreError):
        return type(exc).__name__, Kind.RETRYABLE, str(exc)
    return type(exc).__name__, Kind.FATAL, f"unexpected error publishing: {exc!r}"
