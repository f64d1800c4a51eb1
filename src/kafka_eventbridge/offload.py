"""Large payloads to S3 (claim check): an entry over the size limit carries a reference.

With ``BRIDGE_OFFLOAD_S3_BUCKET`` set, an entry that would exceed the size limit has its
Detail (or one field of it, ``BRIDGE_OFFLOAD_S3_FIELD``) stored in S3 and replaced by a
reference::

    {"kafka_eventbridge_offload": {"bucket": "b", "key": "k", "uri": "s3://b/k",
                                   "size": 812345, "sha256": "…"}}

Entries within the limit are untouched. The object key is derived from the record's
topic, partition and offset and the payload's hash, so a retried upload writes the same
object again: uploads are idempotent. The reference is built when the record is mapped
(its size is known then, so batching stays exact); the upload happens on the publisher
thread right before the entry is sent, and must succeed first. Upload failures follow the
same rules as publish failures: throttling and 5xx are retried, access denied or a missing
bucket is fatal.

The planning here is pure; :class:`Uploader` is the I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from kafka_eventbridge.errors import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MARKER = "kafka_eventbridge_offload"
_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True, slots=True)
class Upload:
    """An object to put in S3 before its entry is sent."""

    bucket: str
    key: str
    body: bytes


@dataclass(frozen=True)
class OffloadPolicy:
    bucket: str
    prefix: str = "kafka-eventbridge/"
    field: str | None = None  # dotted path into Detail; None = the whole Detail

    def __post_init__(self) -> None:
        if self.field is not None and not _FIELD_PATH.fullmatch(self.field):
            raise ConfigError(
                [
                    f"BRIDGE_OFFLOAD_S3_FIELD: {self.field!r} is not a dotted field path "
                    "(e.g. payload or order.items)"
                ]
            )

    def plan(
        self, detail: str, topic: str, partition: int, offset: int
    ) -> tuple[str, Upload] | None:
        """The new Detail and the upload, or None when the field to offload is absent."""
        if self.field is None:
            body = detail.encode()
            upload = self._upload(body, topic, partition, offset)
            return orjson.dumps({MARKER: self._reference(upload)}).decode(), upload
        document = orjson.loads(detail)
        parent, name = _walk(document, self.field)
        if parent is None or name not in parent:
            return None
        body = orjson.dumps(parent[name])
        upload = self._upload(body, topic, partition, offset)
        parent[name] = {MARKER: self._reference(upload)}
        return orjson.dumps(document).decode(), upload

    def _upload(self, body: bytes, topic: str, partition: int, offset: int) -> Upload:
        digest = hashlib.sha256(body).hexdigest()
        key = f"{self.prefix}{topic}/{partition}/{offset}-{digest[:16]}.json"
        return Upload(self.bucket, key, body)

    @staticmethod
    def _reference(upload: Upload) -> dict[str, Any]:
        return {
            "bucket": upload.bucket,
            "key": upload.key,
            "uri": f"s3://{upload.bucket}/{upload.key}",
            "size": len(upload.body),
            "sha256": hashlib.sha256(upload.body).hexdigest(),
        }


def _walk(document: Any, path: str) -> tuple[dict[str, Any] | None, str]:
    *parents, name = path.split(".")
    node = document
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), name


class Uploader:
    """Puts planned objects in S3 (one shared, thread-safe boto3 client)."""

    def __init__(self, client: S3Client, on_error: Callable[[], None] | None = None) -> None:
        self.client = client
        self.on_error = on_error

    def put(self, upload: Upload) -> None:
        try:
            self.client.put_object(
                Bucket=upload.bucket,
                Key=upload.key,
                Body=upload.body,
                ContentType="application/json",
            )
        except Exception:
            if self.on_error is not None:
                self.on_error()  # counted here; the publisher's retry rules decide the rest
            raise
