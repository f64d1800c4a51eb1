"""Classification: what each publish result means for the entries of a request."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from kafka_eventbridge.batching import Pending
from kafka_eventbridge.classify import BatchOutcome, classify_exception, classify_response
from kafka_eventbridge.mapping import Entry
from kafka_eventbridge.records import SourceRecord


def batch(count: int) -> list[Pending]:
    items = []
    for offset in range(count):
        entry = Entry("aws.partner/acme.com/o", "orders", "{}", None, None, None, None, 10)
        record = SourceRecord("orders", 0, offset, None, None, b"{}", [])
        items.append(Pending(entry, record, epoch=1))
    return items


def ok(event_id: str = "e") -> dict[str, Any]:
    return {"EventId": event_id}


def failed(code: str, message: str = "why") -> dict[str, Any]:
    return {"ErrorCode": code, "ErrorMessage": message}


def response(*entries: dict[str, Any], failed_count: int | None = None) -> dict[str, Any]:
    count = sum("ErrorCode" in e for e in entries) if failed_count is None else failed_count
    return {"FailedEntryCount": count, "Entries": list(entries)}


def client_error(code: str, status: int = 400, operation: str = "PutPartnerEvents") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened"},
            "ResponseMetadata": {
                "RequestId": "req-1",
                "HostId": "",
                "HTTPStatusCode": status,
                "HTTPHeaders": {},
                "RetryAttempts": 0,
            },
        },
        operation,
    )


def kinds(outcome: BatchOutcome) -> dict[str, list[int]]:
    """Which offsets went where."""
    return {
        "accepted": [p.record.offset for p in outcome.accepted],
        "retry": [p.record.offset for p, _ in outcome.retry],
        "dead": [p.record.offset for p, _, _ in outcome.dead],
        "split": [p.record.offset for p in outcome.split],
    }


# -- a 200 response ----------------------------------------------------------------------


def test_all_accepted() -> None:
    items = batch(3)
    outcome = classify_response(items, response(ok("1"), ok("2"), ok("3")))

    assert outcome.accepted == items
    assert outcome.label == "success"
    assert outcome.fatal is None and outcome.call_error is None


@pytest.mark.parametrize("code", ["ThrottlingException", "InternalFailure"])
def test_retryable_entry_codes(code: str) -> None:
    items = batch(2)
    outcome = classify_response(items, response(ok(), failed(code)))

    assert kinds(outcome) == {"accepted": [0], "retry": [1], "dead": [], "split": []}
    assert outcome.retry == [(items[1], code)]
    assert outcome.label == "partial_failure"


@pytest.mark.parametrize(
    "code",
    [
        "MalformedDetail",
        "InvalidArgument",
        "RedactionFailure",
        "NotAuthorizedForDetailTypeException",
        "SomethingNew",  # unknown codes are dead-lettered, never retried forever
    ],
)
def test_permanent_entry_codes(code: str) -> None:
    items = batch(2)
    outcome = classify_response(items, response(failed(code, "bad detail"), ok()))

    assert kinds(outcome) == {"accepted": [1], "retry": [], "dead": [0], "split": []}
    assert outcome.dead == [(items[0], code, "bad detail")]
    assert outcome.fatal is None
    assert outcome.label == "partial_failure"


@pytest.mark.parametrize(
    "code",
    ["AccessDeniedException", "NotAuthorizedForSourceException", "InvalidAccountIdException"],
)
def test_fatal_entry_codes_stop_instead_of_dead_lettering(code: str) -> None:
    outcome = classify_response(batch(2), response(failed(code, "not yours"), failed(code)))

    assert outcome.fatal is not None
    assert outcome.fatal.code == code
    assert "not yours" in outcome.fatal.message
    assert outcome.dead == [] and outcome.retry == []
    assert outcome.label == "error"


def test_mixed_response_keeps_request_order() -> None:
    items = batch(5)
    outcome = classify_response(
        items,
        response(ok(), failed("ThrottlingException"), failed("MalformedDetail"), ok(), ok()),
    )

    assert kinds(outcome) == {"accepted": [0, 3, 4], "retry": [1], "dead": [2], "split": []}


def test_entry_without_event_id_or_code_is_not_counted_as_accepted() -> None:
    outcome = classify_response(batch(2), response(ok(), {}, failed_count=1))

    # Neither delivered nor dropped: it is retried or dead-lettered, never lost.
    placed = kinds(outcome)
    assert placed["accepted"] == [0]
    assert placed["retry"] + placed["dead"] == [1]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({}, id="200 {}"),
        pytest.param({"FailedEntryCount": 0}, id="no Entries"),
        pytest.param({"FailedEntryCount": 0, "Entries": []}, id="empty Entries"),
        pytest.param(response(ok(), failed_count=0), id="fewer results, none failed"),
        pytest.param(response(ok(), failed_count=1), id="fewer results, some failed"),
        pytest.param(response(ok(), ok(), ok(), ok()), id="more results than entries"),
        pytest.param({"FailedEntryCount": 0, "Entries": "yes"}, id="Entries not a list"),
    ],
)
def test_an_answer_without_one_result_per_entry_is_a_failed_call(answer: dict[str, Any]) -> None:
    # A proxy or a misrouted endpoint answering 200: nothing says any entry was accepted.
    items = batch(3)
    outcome = classify_response(items, answer)

    assert outcome.accepted == []
    assert outcome.retry == [(item, "InvalidResponse") for item in items]
    assert outcome.invalid_response
    assert outcome.call_error == "InvalidResponse"
    assert outcome.label == "invalid_response"


def test_a_result_that_is_not_an_object_is_retried() -> None:
    outcome = classify_response(batch(2), {"FailedEntryCount": 0, "Entries": [ok(), "x"]})

    assert kinds(outcome)["accepted"] == [0]
    assert kinds(outcome)["retry"] == [1]


@pytest.mark.parametrize("code", ["AccessDeniedException", "NotAuthorizedForSourceException"])
def test_a_refused_target_taken_from_the_record_is_that_records_dead_letter(code: str) -> None:
    items = batch(2)
    items[1].entry.record_target = True  # its source comes from the record's value
    outcome = classify_response(items, response(ok(), failed(code)))

    assert outcome.fatal is None
    assert [(item, c) for item, c, _ in outcome.dead] == [(items[1], code)]


@pytest.mark.parametrize("code", ["AccessDeniedException", "NotAuthorizedForSourceException"])
def test_a_refused_constant_target_is_fatal(code: str) -> None:
    outcome = classify_response(batch(2), response(ok(), failed(code)))

    assert outcome.fatal is not None
    assert outcome.fatal.code == code
    assert outcome.dead == []


# -- a failed call -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ThrottlingException", 400),
        ("InternalException", 500),
        ("InternalFailure", 500),
        ("ServiceUnavailable", 503),
        ("ExpiredTokenException", 400),
        ("SomethingUnknown", 500),
    ],
)
def test_retryable_call_errors_retry_the_whole_batch(code: str, status: int) -> None:
    items = batch(3)
    outcome = classify_exception(items, client_error(code, status))

    assert outcome.retry == [(item, code) for item in items]
    assert outcome.fatal is None
    assert outcome.call_error == code
    assert outcome.label == "error"


@pytest.mark.parametrize(
    "code",
    [
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ResourceNotFoundException",
        "OperationDisabledException",
        "NotAuthorizedForSourceException",
        "InvalidAccountIdException",
    ],
)
def test_fatal_call_errors(code: str) -> None:
    outcome = classify_exception(batch(2), client_error(code, 403))

    assert outcome.fatal is not None
    assert outcome.fatal.code == code
    assert outcome.fatal.message == f"{code} happened"
    assert kinds(outcome) == {"accepted": [], "retry": [], "dead": [], "split": []}
    assert outcome.label == "error"


def test_validation_error_of_a_batch_splits_it() -> None:
    items = batch(3)
    outcome = classify_exception(items, client_error("ValidationException"))

    assert outcome.split == items
    assert outcome.dead == [] and outcome.retry == [] and outcome.fatal is None
    assert outcome.call_error == "ValidationException"


def test_validation_error_of_a_single_entry_dead_letters_it() -> None:
    items = batch(1)
    outcome = classify_exception(items, client_error("ValidationException"))

    assert outcome.dead == [(items[0], "ValidationException", "ValidationException happened")]
    assert outcome.split == []


def test_parameter_validation_splits_like_a_refused_request() -> None:
    outcome = classify_exception(batch(2), ParamValidationError(report="Detail too long"))

    assert kinds(outcome)["split"] == [0, 1]


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="https://events.eu-west-1.amazonaws.com"),
        ConnectionClosedError(endpoint_url="https://events.eu-west-1.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://events.eu-west-1.amazonaws.com"),
        ConnectTimeoutError(endpoint_url="https://events.eu-west-1.amazonaws.com"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_connection_trouble_is_retried(exc: Exception) -> None:
    outcome = classify_exception(batch(2), exc)

    assert kinds(outcome)["retry"] == [0, 1]
    assert outcome.retry[0][1] == type(exc).__name__
    assert outcome.fatal is None


@pytest.mark.parametrize(
    "exc",
    [
        NoCredentialsError(),
        PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_missing_credentials_are_fatal(exc: Exception) -> None:
    outcome = classify_exception(batch(2), exc)

    assert outcome.fatal is not None
    assert outcome.fatal.code == "NoCredentials"
    assert outcome.retry == [] and outcome.dead == []


def test_unexpected_exception_is_fatal_not_dropped() -> None:
    outcome = classify_exception(batch(1), RuntimeError("boom"))

    assert outcome.fatal is not None
    assert outcome.fatal.code == "RuntimeError"
    assert "boom" in outcome.fatal.message
