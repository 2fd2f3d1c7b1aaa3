"""S3-compatible object stores (AWS S3, MinIO, Ceph RGW...) as pull mirrors and push
destinations: ``s3://BUCKET/PREFIX`` holds a MODELS_ROOT's files under ``PREFIX/`` (a
directory artifact's files under ``PREFIX/<artifact path>/<file>``) and, written last by
``dp-models push``, the lock of what was pushed at ``PREFIX/`` :data:`MANIFEST`.

The client is boto3 (the ``s3`` extra; ``docs/deploying.md`` says why it and not
obstore). Region, credentials and endpoint come from the standard AWS settings: the
environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_REGION`` / ``AWS_DEFAULT_REGION``, ``AWS_PROFILE``), the shared config and
credentials files, and for MinIO/Ceph-style stores the endpoint override
``AWS_ENDPOINT_URL_S3`` (or ``AWS_ENDPOINT_URL``, or ``endpoint_url`` in the profile); a
store at an overridden endpoint is addressed path-style (``ENDPOINT/BUCKET/KEY``).
Credentials are never shown: messages name ``s3://BUCKET/PREFIX`` only.

Pulling streams each object into the pull's hashing sink: one GET, or, when the profile
asks for it (:class:`Transfers`), for a large object several ranged GETs at once whose
parts are written (and hashed) in order; a dropped
connection is resumed from the last byte received. Pushing uploads a large file as a
multipart upload (each part with a CRC32 the store checks, as boto3's own uploads do) that
is completed, making the object visible, only when the file is the verified one (hashed as
it is read, or, trusting the digest cache, untouched since it was verified), and aborted
otherwise; a small file is hashed in memory and sent in one PUT with its sha256 for the
store to check (the checksums sent follow the AWS settings' ``request_checksum_calculation``:
none but required ones under ``when_required``). Every object carries its sha256 in its
metadata (``x-amz-meta-sha256``): :meth:`S3Destination.has` reads it to skip a file the
store holds, and a pull compares it with what arrived (which it hashes anyway).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._digest import is_sha256
from ._errors import ConfigurationError, LockError, MissingExtraError, SourceUnavailableError
from ._lock import Lock, LockEntry
from ._transfer import (
    CHUNK_SIZE,
    Listing,
    Sink,
    _CancelledError,
    _DestinationError,
    _NotThereError,
    _PutMismatchError,
    _TooLongError,
)
from ._urls import S3Location, parse_s3_url

log = logging.getLogger("dp_models")

__all__ = [
    "MANIFEST",
    "S3Destination",
    "S3Location",
    "S3Mirror",
    "Transfers",
    "make_client",
    "parse_s3_url",
    "transfers",
    "triton_repository_url",
]

#: The object (below the prefix) holding the lock of what was pushed, written last.
MANIFEST = "catalog.lock.json"
#: S3's smallest part (but the last) of a multipart upload.
MIN_PART = 5 << 20
_MAX_PARTS = 10_000
_RETRIES = 4
_BACKOFF_S = 0.2
_SHA256_KEY = "sha256"
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
#: The pull's own signals (cancelled, the destination failed, too long): never retried.
_SIGNALS = (_CancelledError, _DestinationError, _TooLongError)


def _boto3() -> Any:
    try:
        import boto3  # type: ignore[import-untyped]
    except ImportError:
        raise MissingExtraError("boto3", extra="s3") from None
    return boto3


@dataclass(frozen=True)
class Transfers:
    """How large files move, from the profile's ``s3`` section, the settings the AWS CLI
    reads (``aws configure set default.s3.multipart_threshold 64MB``):

    * ``multipart_threshold``: a pull fetches an object at least this large with ranged
      GETs of ``multipart_chunksize`` bytes, ``max_concurrent_requests`` at a time,
      written and hashed in order. Unset (the default): one GET per object, files in
      parallel (``--jobs``): one stream is fastest on MinIO/Ceph-style stores, and on a
      store that serves each range by reading the whole object (seen with moto's server);
      on AWS, where one connection tops out well below the link, set it.
    * a push uploads a file larger than ``multipart_chunksize`` (default 8 MiB, at least
      5 MiB; more for a file of over 10,000 parts) as a multipart upload,
      ``max_concurrent_requests`` (default 10, as the AWS CLI's) parts at a time.
    """

    threshold: int | None = None
    chunksize: int = 8 << 20
    concurrency: int = 10


def _size(value: object, key: str) -> int:
    """A size as the AWS CLI writes it: bytes, or a number with KB, MB, GB (powers of 1024)."""
    text = str(value).strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    factor = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    try:
        found = int(float(number) * factor)
    except ValueError:
        found = -1
    if found <= 0:
        raise ConfigurationError(
            f"the AWS profile's s3 {key} must be a size (e.g. 8MB, 64MB, 8388608), not {value!r}"
        )
    return found


def transfers(session: Any) -> Transfers:
    """The :class:`Transfers` the session's profile sets (its ``s3`` section)."""
    try:
        section = session._session.get_scoped_config().get("s3") or {}
    except Exception:  # a profile boto3 cannot read fails later, with boto3's own message
        section = {}
    if not isinstance(section, dict):
        section = {}
    threshold = section.get("multipart_threshold")
    chunk = section.get("multipart_chunksize")
    concurrency = section.get("max_concurrent_requests")
    try:
        n = int(concurrency) if concurrency is not None else Transfers.concurrency
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigurationError(
            f"the AWS profile's s3 max_concurrent_requests must be a positive number, not "
            f"{concurrency!r}"
        )
    return Transfers(
        _size(threshold, "multipart_threshold") if threshold is not None else None,
        _size(chunk, "multipart_chunksize") if chunk is not None else Transfers.chunksize,
        n,
    )


def make_client(*, pool: int = 32) -> tuple[Any, Transfers]:
    """A thread-safe S3 client from the standard AWS settings (module docs), and the
    profile's :class:`Transfers`."""
    boto3 = _boto3()
    from botocore.config import Config  # type: ignore[import-untyped]

    config = Config(
        retries={"max_attempts": _RETRIES + 1, "mode": "standard"},
        max_pool_connections=pool,
        connect_timeout=10,
        read_timeout=60,
        # what a pull receives is hashed (sha256) as it streams and held to the pin: a
        # CRC32 check of the same bytes on top would only cost time (0.4 s a GiB here).
        # Checksums sent follow the AWS settings (request_checksum_calculation).
        response_checksum_validation="when_required",
    )
    from botocore.exceptions import BotoCoreError  # type: ignore[import-untyped]

    try:
        session = boto3.session.Session()
        client = session.client("s3", config=config)
        if not _is_aws(client.meta.endpoint_url):  # MinIO/Ceph-style: path-style addressing
            path_style = config.merge(Config(s3={"addressing_style": "path"}))
            client = session.client("s3", config=path_style)
    except (BotoCoreError, ValueError) as exc:  # a missing profile, an endpoint not a URL
        raise ConfigurationError(
            f"the AWS settings do not make an S3 client ({type(exc).__name__}: {exc}). Check "
            "AWS_PROFILE and the profile's files, AWS_REGION / AWS_DEFAULT_REGION, and "
            "AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (an http(s) URL)"
        ) from None
    return client, transfers(session)


def _is_aws(endpoint: str) -> bool:
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def _why(exc: BaseException) -> str:
    """A short reason for an S3 failure (boto3's messages carry no credentials)."""
    code = _error_code(exc)
    if code is not None:
        message = getattr(exc, "response", {}).get("Error", {}).get("Message") or ""
        return f"{code}: {message}".rstrip(": ") if message else code
    return f"{type(exc).__name__}: {exc}"


def _retryable(exc: BaseException) -> bool:
    """A dropped or timed-out connection, a body cut short, or a server error: worth another
    try on top of boto3's own (which cover the request, not reading the body). Missing
    credentials, a refusal, an unknown bucket: not."""
    code = _error_code(exc)
    if code is not None:
        return code in {"500", "502", "503", "504", "InternalError", "SlowDown", "RequestTimeout"}
    from botocore import exceptions as boto  # type: ignore[import-untyped]
    from urllib3 import exceptions as urllib3

    transient = (
        boto.HTTPClientError,  # connection reset, read timed out (boto3 retried it)
        boto.ConnectionError,  # endpoint refused, connect timed out
        boto.ResponseStreamingError,
        boto.IncompleteReadError,
        urllib3.ProtocolError,
        urllib3.ReadTimeoutError,
        ConnectionError,
        TimeoutError,
    )
    return isinstance(exc, transient)


class _Store:
    """What mirror and destination share: the location, the client and the errors."""

    def __init__(
        self,
        url: str | S3Location,
        *,
        client: Any = None,
        role: str,
        transfers: Transfers | None = None,
    ) -> None:
        self.where_ = url if isinstance(url, S3Location) else parse_s3_url(url)
        self.shown = self.where_.shown
        self.role = role
        if client is None:
            client, found = make_client()
            transfers = transfers or found
        self._client = client
        self.transfers = transfers or Transfers()

    def where(self, rel: str) -> str:
        return self.shown

    def _unavailable(self, rel: str | None, exc: BaseException | str) -> SourceUnavailableError:
        why = exc if isinstance(exc, str) else _why(exc)
        about = f"{rel}: " if rel else ""
        return SourceUnavailableError(
            f"{self.role} {self.shown}: {about}{why}", source=self.shown, path=rel
        )

    def _head(self, rel: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self._client.head_object(
                Bucket=self.where_.bucket, Key=self.where_.key(rel)
            )
        except Exception as exc:
            if _error_code(exc) in _NOT_FOUND:
                return None
            raise self._unavailable(rel, exc) from None
        return head

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()


class S3Mirror(_Store):
    """An S3-compatible store holding a MODELS_ROOT below ``s3://BUCKET/PREFIX`` (module
    docs). It lists a directory from the pushed lock's manifest when it has one, else from
    the object listing."""

    lists = True

    def __init__(
        self,
        url: str | S3Location,
        *,
        client: Any = None,
        role: str = "mirror",
        transfers: Transfers | None = None,
    ) -> None:
        super().__init__(url, client=client, role=role, transfers=transfers)
        self._manifest: Lock | None = None
        self._manifest_read = False
        self._manifest_lock = threading.Lock()

    # -- listing ------------------------------------------------------------------------

    def manifest(self) -> Lock | None:
        """The lock a push wrote at ``PREFIX/catalog.lock.json``, or None (read once)."""
        with self._manifest_lock:
            if not self._manifest_read:
                self._manifest = self._read_manifest()
                self._manifest_read = True
            return self._manifest

    def _read_manifest(self) -> Lock | None:
        head = self._head(MANIFEST)
        if head is None:
            return None
        if int(head.get("ContentLength", 0)) > _MAX_MANIFEST_BYTES:
            raise self._unavailable(MANIFEST, f"larger than {_MAX_MANIFEST_BYTES} bytes")
        try:
            body = self._client.get_object(
                Bucket=self.where_.bucket, Key=self.where_.key(MANIFEST)
            )["Body"]
            raw = body.read(_MAX_MANIFEST_BYTES + 1)
        except Exception as exc:
            raise self._unavailable(MANIFEST, exc) from None
        try:
            return Lock.parse(raw, Path(MANIFEST))
        except LockError as exc:
            raise self._unavailable(MANIFEST, f"not a valid lock ({exc})") from None

    def entry(self, rel: str) -> LockEntry | None:
        """The pushed lock's entry for the artifact at ``rel``, if any."""
        manifest = self.manifest()
        return None if manifest is None else manifest.artifacts.get(rel)

    def list(self, rel: str) -> dict[str, Listing] | None:
        entry = self.entry(rel)
        if entry is not None and entry.kind == "dir" and entry.files is not None:
            return {name: Listing(f.size, f.sha256) for name, f in entry.files.items()}
        found: dict[str, Listing] = {}
        base = self.where_.key(rel).rstrip("/") + "/"
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.where_.bucket, Prefix=base
            )
            for page in pages:
                for obj in page.get("Contents", ()):
                    name = obj["Key"][len(base) :]
                    if name and not name.endswith("/"):
                        found[name] = Listing(int(obj["Size"]))
        except Exception as exc:
            raise self._unavailable(rel, exc) from None
        return found or None

    def probe(self, rel: str) -> int | None:
        head = self._head(rel)
        return None if head is None else int(head["ContentLength"])

    # -- fetching -----------------------------------------------------------------------

    def fetch(self, rel: str, sink: Sink) -> None:
        key = self.where_.key(rel)
        threshold = self.transfers.threshold
        if sink.size is None or threshold is None or sink.size < threshold:
            self._fetch_stream(rel, key, sink)
        else:
            self._fetch_ranged(rel, key, sink)

    def _get(self, rel: str, key: str, first: int, last: int | None) -> Any:
        """The GET of bytes ``first``..``last`` (None: to the end); its response."""
        extra = {}
        if first or last is not None:
            extra["Range"] = f"bytes={first}-{'' if last is None else last}"
        try:
            return self._client.get_object(Bucket=self.where_.bucket, Key=key, **extra)
        except Exception as exc:
            code = _error_code(exc)
            if code in _NOT_FOUND:
                raise _NotThereError from None
            if code == "InvalidRange":  # nothing more to read past the end
                raise self._unavailable(rel, "shorter than announced") from None
            raise

    def _fetch_stream(self, rel: str, key: str, sink: Sink) -> None:
        """One GET, resumed from the last byte received after a dropped connection."""
        failures = 0
        while True:
            start = sink.received
            try:
                resp = self._get(rel, key, start, None)
                if start == 0:
                    length = int(resp["ContentLength"])
                    if sink.size is None:
                        sink.size = length
                    elif length != sink.size:
                        resp["Body"].close()
                        self._wrong_size(rel, length, sink)
                    meta = resp.get("Metadata") or {}
                    sink.published = _published(meta.get(_SHA256_KEY))
                body = resp["Body"]
                try:
                    for chunk in body.iter_chunks(CHUNK_SIZE):
                        sink.write(chunk)
                finally:
                    body.close()
            except (_NotThereError, SourceUnavailableError, *_SIGNALS):
                raise
            except Exception as exc:
                if not _retryable(exc):
                    raise self._unavailable(rel, exc) from None
                failures = 0 if sink.received > start else failures + 1
                if failures > _RETRIES:
                    raise self._unavailable(rel, exc) from None
                time.sleep(_BACKOFF_S * (2 ** max(failures - 1, 0)))
                continue
            if sink.size is not None and sink.received < sink.size:
                failures = 0 if sink.received > start else failures + 1
                if failures > _RETRIES:
                    raise self._unavailable(rel, "the answer was shorter than announced")
                continue
            return

    def _wrong_size(self, rel: str, length: int, sink: Sink) -> None:
        if sink.size is not None and length > sink.size:
            raise _TooLongError
        raise self._unavailable(
            rel, f"the object has {length} bytes, the pin says {sink.size}: it holds another file"
        )

    def _fetch_ranged(self, rel: str, key: str, sink: Sink) -> None:
        """Several ranged GETs at once; their bytes are written to the sink in order."""
        assert sink.size is not None
        head = self._head(rel)
        if head is None:
            raise _NotThereError
        length = int(head["ContentLength"])
        if length != sink.size:
            self._wrong_size(rel, length, sink)
        sink.published = _published((head.get("Metadata") or {}).get(_SHA256_KEY))
        step, flight = self.transfers.chunksize, self.transfers.concurrency
        ranges = [(o, min(o + step, length) - 1) for o in range(0, length, step)]
        with ThreadPoolExecutor(flight, thread_name_prefix="dp-models-s3-get") as pool:
            pending: list[Future[bytes]] = []
            it = iter(ranges)
            try:
                for first, last in it:
                    pending.append(pool.submit(self._range, rel, key, first, last, sink))
                    if len(pending) >= flight:
                        sink.write(pending.pop(0).result())
                while pending:
                    sink.write(pending.pop(0).result())
            finally:
                for f in pending:
                    f.cancel()

    def _range(self, rel: str, key: str, first: int, last: int, sink: Sink) -> bytes:
        want = last - first + 1
        buf = bytearray()
        failures = 0
        while len(buf) < want:
            if sink.cancel.is_set():
                raise _CancelledError
            got = len(buf)
            try:
                body = self._get(rel, key, first + got, last)["Body"]
                try:
                    for chunk in body.iter_chunks(CHUNK_SIZE):
                        if len(buf) + len(chunk) > want:
                            raise self._unavailable(rel, "a range answer longer than asked")
                        buf += chunk
                finally:
                    body.close()
            except (_NotThereError, SourceUnavailableError, *_SIGNALS):
                raise
            except Exception as exc:
                if not _retryable(exc):
                    raise self._unavailable(rel, exc) from None
            failures = 0 if len(buf) > got else failures + 1
            if failures > _RETRIES:
                raise self._unavailable(rel, "the answer was shorter than announced")
            if failures:
                time.sleep(_BACKOFF_S * (2 ** (failures - 1)))
        return bytes(buf)


def _published(value: object) -> str | None:
    """The sha256 an object's metadata publishes, when it is one."""
    return value if isinstance(value, str) and is_sha256(value) else None


class S3Destination(_Store):
    """Pushes a MODELS_ROOT's files to ``s3://BUCKET/PREFIX`` (module docs)."""

    def __init__(
        self, url: str | S3Location, *, client: Any = None, transfers: Transfers | None = None
    ) -> None:
        super().__init__(url, client=client, role="destination", transfers=transfers)
        self._parts = ThreadPoolExecutor(
            self.transfers.concurrency, thread_name_prefix="dp-models-s3-put"
        )
        # parts read and not yet sent, across every file being pushed: memory stays within
        # max_concurrent_requests parts however many files go at once
        self._slots = threading.BoundedSemaphore(self.transfers.concurrency)

    def has(self, rel: str, size: int, sha256: str) -> bool:
        head = self._head(rel)
        return (
            head is not None
            and int(head["ContentLength"]) == size
            and (head.get("Metadata") or {}).get(_SHA256_KEY) == sha256
        )

    def put(
        self,
        rel: str,
        fd: int,
        size: int,
        sha256: str,
        advance: Callable[[int], None],
        *,
        unchanged: Callable[[], bool] | None = None,
    ) -> None:
        key = self.where_.key(rel)
        part = max(self.transfers.chunksize, MIN_PART, -(-size // _MAX_PARTS))
        if size <= part:
            data = _read_exactly(fd, 0, size)
            actual = hashlib.sha256(data).hexdigest()  # in hand: hashed whatever the policy
            if actual != sha256 or len(data) != size:
                raise _PutMismatchError(actual, len(data))
            self.write(rel, data, sha256=sha256)
            advance(size)
            return
        upload = self._call(
            rel,
            lambda: self._client.create_multipart_upload(
                Bucket=self.where_.bucket,
                Key=key,
                Metadata={_SHA256_KEY: sha256},
                **self._crc32(),
            ),
        )["UploadId"]
        done = False
        pending: dict[Future[dict[str, Any]], int] = {}
        try:
            hasher = hashlib.sha256() if unchanged is None else None
            etags: list[dict[str, Any]] = []
            for number, offset in enumerate(range(0, size, part), start=1):
                while not self._slots.acquire(timeout=0.1):  # parts of other files hold them
                    if pending:
                        _collect(pending, etags, advance, FIRST_COMPLETED)
                try:
                    data = _read_exactly(fd, offset, min(part, size - offset))
                    if hasher is not None:
                        hasher.update(data)
                    job = self._parts.submit(self._part, rel, key, upload, number, data)
                except BaseException:
                    self._slots.release()
                    raise
                pending[job] = len(data)
                if len(pending) >= self.transfers.concurrency:  # a slot frees as any part ends
                    _collect(pending, etags, advance, FIRST_COMPLETED)
            _collect(pending, etags, advance, ALL_COMPLETED)
            if hasher is not None and hasher.hexdigest() != sha256:
                raise _PutMismatchError(hasher.hexdigest(), size)
            if unchanged is not None and not unchanged():
                raise _PutMismatchError(None, size)
            etags.sort(key=lambda e: int(e["PartNumber"]))
            self._call(
                rel,
                lambda: self._client.complete_multipart_upload(
                    Bucket=self.where_.bucket,
                    Key=key,
                    UploadId=upload,
                    MultipartUpload={"Parts": etags},
                ),
            )
            done = True
        finally:
            if not done:
                for job in pending:
                    if job.cancel():  # never ran: its slot is freed here
                        self._slots.release()
                wait(pending)  # parts still in flight end before the upload is aborted
                with contextlib.suppress(Exception):
                    self._client.abort_multipart_upload(
                        Bucket=self.where_.bucket, Key=key, UploadId=upload
                    )

    def _part(self, rel: str, key: str, upload: str, number: int, data: bytes) -> dict[str, Any]:
        try:
            return self._send_part(rel, key, upload, number, data)
        finally:
            self._slots.release()

    def _send_part(
        self, rel: str, key: str, upload: str, number: int, data: bytes
    ) -> dict[str, Any]:
        resp = self._call(
            rel,
            lambda: self._client.upload_part(
                Bucket=self.where_.bucket,
                Key=key,
                UploadId=upload,
                PartNumber=number,
                Body=data,
                **self._crc32(),
            ),
        )
        part = {"PartNumber": number, "ETag": resp["ETag"]}
        if "ChecksumCRC32" in resp:
            part["ChecksumCRC32"] = resp["ChecksumCRC32"]
        return part

    def _checksums(self) -> bool:
        """Whether to send checksums for the store to check (the AWS settings'
        ``request_checksum_calculation``: anything but ``when_required``)."""
        setting = getattr(self._client.meta.config, "request_checksum_calculation", None)
        return setting != "when_required"

    def _sha256_header(self, digest: bytes) -> dict[str, str]:
        """A single PUT's sha256, for the store to check the bytes it receives."""
        if not self._checksums():
            return {}
        return {"ChecksumSHA256": base64.b64encode(digest).decode("ascii")}

    def _crc32(self) -> dict[str, str]:
        """Each part with a CRC32 the store checks in transit (as boto3's own uploads), unless
        the AWS settings say checksums only where required (a store that has none)."""
        return {"ChecksumAlgorithm": "CRC32"} if self._checksums() else {}

    def _call(self, rel: str, fn: Callable[[], Any]) -> Any:
        """``fn()``; an S3 failure (after boto3's own retries) as SourceUnavailableError."""
        try:
            return fn()
        except Exception as exc:
            raise self._unavailable(rel, exc) from None

    def holds_anything(self) -> bool:
        """Whether any object lies below the prefix."""
        prefix = self.where_.key("")
        found = self._call(
            "",
            lambda: self._client.list_objects_v2(
                Bucket=self.where_.bucket, Prefix=prefix, MaxKeys=1
            ),
        )
        return bool(found.get("Contents"))

    def write(
        self,
        rel: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        sha256: str | None = None,
    ) -> None:
        """Put a small object: the bytes in hand (``sha256``: their digest, when the caller
        has it), their sha256 in its metadata and sent for the store to check."""
        digest = sha256 or hashlib.sha256(data).hexdigest()
        self._call(
            rel,
            lambda: self._client.put_object(
                Bucket=self.where_.bucket,
                Key=self.where_.key(rel),
                Body=data,
                ContentType=content_type,
                Metadata={_SHA256_KEY: digest},
                **self._sha256_header(bytes.fromhex(digest)),
            ),
        )

    def delete(self, rels: Sequence[str]) -> list[str]:
        """Remove these objects, as far as the store lets (cleaning up after a failure); the
        ones left behind, each logged as a warning (with why)."""
        left: list[str] = []
        for start in range(0, len(rels), 1000):
            chunk = list(rels[start : start + 1000])
            batch = [{"Key": self.where_.key(r)} for r in chunk]
            try:
                answer = self._client.delete_objects(
                    Bucket=self.where_.bucket, Delete={"Objects": batch, "Quiet": True}
                )
                errors = answer.get("Errors") or []
                failed = {str(e.get("Key")): str(e.get("Code")) for e in errors}
            except Exception as exc:
                failed = {self.where_.key(r): _why(exc) for r in chunk}
            for key, why in failed.items():
                log.warning("%s: could not remove %s after a failure (%s)", self.shown, key, why)
                left.append(key)
        return left

    def commit(self, manifest: bytes) -> str:
        """Write the manifest: the lock already there (earlier pushes of other specs) with
        the entries of ``manifest`` merged in."""
        pushed = Lock.parse(manifest, Path(MANIFEST))
        held = S3Mirror(self.where_, client=self._client, role=self.role).manifest()
        merged = {**(held.artifacts if held is not None else {}), **pushed.artifacts}
        manifest = Lock(Path(MANIFEST), merged, exists=True).dumps().encode()
        self.write(MANIFEST, manifest, content_type="application/json")
        return self.shown

    def close(self) -> None:
        self._parts.shutdown(wait=True, cancel_futures=True)
        super().close()


def _collect(
    pending: dict[Future[dict[str, Any]], int],
    etags: list[dict[str, Any]],
    advance: Callable[[int], None],
    when: str,
) -> None:
    """Wait for parts of ``pending`` (the first to end, or all): each one's number and ETag
    into ``etags``, its size to ``advance``; a failed part raises its error."""
    finished, _ = wait(pending, return_when=when)
    for job in finished:
        size = pending.pop(job)
        etags.append(job.result())
        advance(size)


def _read_exactly(fd: int, offset: int, size: int) -> bytes:
    """``size`` bytes of ``fd`` from ``offset`` (fewer only when the file got shorter)."""
    chunks: list[bytes] = []
    got = 0
    while got < size:
        chunk = os.pread(fd, min(size - got, 8 << 20), offset + got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def triton_repository_url(url: str | S3Location, *, client: Any = None) -> str:
    """The ``--model-repository`` value under which a Triton server reads the repository
    at ``url``: ``s3://BUCKET/PREFIX`` on AWS; for a store at an overridden endpoint,
    Triton's ``s3://SCHEME://HOST:PORT/BUCKET/PREFIX`` (the server takes the region and
    credentials from the same AWS variables)."""
    where = url if isinstance(url, S3Location) else parse_s3_url(url)
    if client is None:
        made = make_client()[0]
        try:
            endpoint = str(made.meta.endpoint_url)
        finally:
            made.close()
    else:
        endpoint = str(client.meta.endpoint_url)
    if _is_aws(endpoint):
        return where.shown
    tail = f"{where.bucket}/{where.prefix}" if where.prefix else where.bucket
    return f"s3://{endpoint.rstrip('/')}/{tail}"
