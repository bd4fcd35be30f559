"""SageMaker real-time endpoint data capture, written to the local S3 as SageMaker writes it.

An endpoint's ``DataCaptureConfig`` decides what is captured: ``EnableCapture`` (default on),
``InitialSamplingPercentage``, ``CaptureOptions`` (``Input`` and/or ``Output``),
``DestinationS3Uri``, ``KmsKeyId`` (objects are written with SSE-KMS under that key, otherwise
under the bucket's default encryption) and ``CaptureContentTypeHeader`` (``JsonContentTypes``
are stored as text with encoding ``JSON``, ``CsvContentTypes`` as text with ``CSV``, anything
else ``BASE64``).
Each captured invocation is one JSON line::

    {"captureData": {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                                       "data": "{\\"sentence\\": \\"...\\"}", "encoding": "JSON"},
                     "endpointOutput": {... "mode": "OUTPUT" ...}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceId": "<X-Amzn-SageMaker-Inference-Id>",
                       "inferenceTime": "2026-11-24T01:30:00Z"},
     "eventVersion": "0"}

in objects keyed ``<DestinationS3Uri path>/<EndpointName>/<VariantName>/yyyy/mm/dd/hh/
<mm-ss-SSS>-<uuid>.jsonl`` (UTC, from the first record in the object).

Durability: :meth:`DataCapture.capture` appends the record to a write-ahead spool file and
flushes it to the operating system (no fsync) before returning: once the invocation's response
is sent, its record outlives a crash of the process. A background thread seals the spool segment
about once a second, uploads its records and only then deletes it; :meth:`DataCapture.stop`
uploads what is left. Segments left by a crash are uploaded by :meth:`DataCapture.start`, into the
S3 of the process that runs it: in the local cloud, whose moto state dies with its daemon, a
killed daemon's buckets are gone (with the records already uploaded to them), so the next daemon
drops its leftover records with an error naming the bucket. Object
names are derived from the segment and the group, so uploading a segment twice (a crash between
upload and delete) rewrites the same objects instead of duplicating records.

    capture = DataCapture(Path(".localcloud/state/capture-spool"))
    capture.start()                                   # replays leftover segments, starts uploads
    settings = capture.settings_for(endpoint.data_capture_config)   # None: capture is off
    capture.capture(settings, account_id="123456789012", endpoint="E", variant="Model-A",
                    request_body=b"...", request_type="application/json",
                    response_body=b"...", response_type="application/json",
                    inference_id=None)               # True when sampled and spooled
    capture.flush()                                   # seal and upload now (tests, shutdown)
    capture.stop()
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

log = logging.getLogger("localcloud.capture")

SEGMENT_SUFFIX = ".spool"
# Object names for a given segment and group are stable across retries (see module docstring).
_KEY_NAMESPACE = uuid.UUID("0b3e5a5e-7c1a-4f36-9d8e-6c2f3b1a9e47")

# (account_id, bucket, key, body, kms_key_id or None)
PutObject = Callable[[str, str, str, bytes, "str | None"], None]


class CaptureConfigError(ValueError):
    """A DataCaptureConfig value that cannot be honoured; the message names the key."""


def capture_enabled(config: Mapping[str, Any]) -> bool:
    """A DataCaptureConfig's ``EnableCapture``: on by default; CloudFormation passes booleans as
    strings."""
    enabled = config.get("EnableCapture", True)
    if isinstance(enabled, str):
        return enabled.lower() == "true"
    return bool(enabled)


def _content_types(header: Any) -> tuple[frozenset[str], frozenset[str]]:
    """A CaptureContentTypeHeader's (JSON, CSV) media types, lower-cased."""
    if not isinstance(header, Mapping):
        raise CaptureConfigError(
            f"DataCaptureConfig.CaptureContentTypeHeader={header!r}: expected an object"
        )
    found = []
    for key in ("JsonContentTypes", "CsvContentTypes"):
        types = header.get(key) or []
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise CaptureConfigError(
                f"DataCaptureConfig.CaptureContentTypeHeader.{key}={types!r}: "
                "expected a list of content types"
            )
        found.append(frozenset(t.lower() for t in types))
    return found[0], found[1]


@dataclass(frozen=True)
class CaptureSettings:
    sampling_percentage: float
    capture_input: bool
    capture_output: bool
    bucket: str
    prefix: str  # without leading or trailing "/"
    json_types: frozenset[str]
    csv_types: frozenset[str]
    kms_key_id: str | None = None

    @classmethod
    def parse(cls, config: Mapping[str, Any] | None) -> "CaptureSettings | None":
        """Settings for a DataCaptureConfig; None when capture is absent or disabled.

        A disabled config is checked too: SageMaker requires its members either way, so an
        endpoint config that capture could never be switched on for is refused."""
        if not config:
            return None
        if not isinstance(config, Mapping):
            raise CaptureConfigError(f"DataCaptureConfig must be an object, got {config!r}")
        raw_pct = config.get("InitialSamplingPercentage")
        try:
            pct = float(raw_pct)
        except (TypeError, ValueError):
            pct = -1.0
        if not 0 <= pct <= 100:
            raise CaptureConfigError(
                f"DataCaptureConfig.InitialSamplingPercentage={raw_pct!r}: expected 0 to 100"
            )
        modes = set()
        for i, option in enumerate(config.get("CaptureOptions") or []):
            mode = option.get("CaptureMode") if isinstance(option, Mapping) else None
            if mode not in ("Input", "Output"):
                raise CaptureConfigError(
                    f"DataCaptureConfig.CaptureOptions[{i}].CaptureMode={mode!r}: "
                    "expected 'Input' or 'Output'"
                )
            modes.add(mode)
        if not modes:
            raise CaptureConfigError(
                "DataCaptureConfig.CaptureOptions: expected Input and/or Output"
            )
        uri = config.get("DestinationS3Uri")
        if not isinstance(uri, str) or not uri.startswith("s3://") or len(uri) <= 5:
            raise CaptureConfigError(
                f"DataCaptureConfig.DestinationS3Uri={uri!r}: expected s3://bucket[/prefix]"
            )
        bucket, _, prefix = uri[5:].partition("/")
        kms_key_id = config.get("KmsKeyId") or None
        if kms_key_id is not None and not isinstance(kms_key_id, str):
            raise CaptureConfigError(
                f"DataCaptureConfig.KmsKeyId={kms_key_id!r}: expected a KMS key id, ARN or alias"
            )
        json_types, csv_types = _content_types(config.get("CaptureContentTypeHeader") or {})
        if not capture_enabled(config):
            return None
        return cls(
            sampling_percentage=pct,
            capture_input="Input" in modes,
            capture_output="Output" in modes,
            bucket=bucket,
            prefix=prefix.strip("/"),
            json_types=json_types,
            csv_types=csv_types,
            kms_key_id=kms_key_id,
        )

    def encode(self, data: bytes, content_type: str | None) -> tuple[str, str]:
        """(data, encoding) as SageMaker stores a payload of ``content_type``."""
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        for types, encoding in ((self.json_types, "JSON"), (self.csv_types, "CSV")):
            if media_type and media_type in types:
                try:
                    return data.decode("utf-8"), encoding
                except UnicodeDecodeError:
                    break  # not text after all: keep it exact
        return base64.b64encode(data).decode("ascii"), "BASE64"


def build_record(
    settings: CaptureSettings,
    request_body: bytes,
    request_type: str | None,
    response_body: bytes,
    response_type: str | None,
    inference_id: str | None,
    when: float,
) -> dict:
    data: dict[str, dict] = {}
    if settings.capture_input:
        data["endpointInput"] = _payload(settings, request_body, request_type, "INPUT")
    if settings.capture_output:
        data["endpointOutput"] = _payload(settings, response_body, response_type, "OUTPUT")
    metadata = {"eventId": str(uuid.uuid4())}
    if inference_id:
        metadata["inferenceId"] = inference_id
    metadata["inferenceTime"] = _utc(when).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"captureData": data, "eventMetadata": metadata, "eventVersion": "0"}


def _payload(settings: CaptureSettings, body: bytes, content_type: str | None, mode: str) -> dict:
    text, encoding = settings.encode(body, content_type)
    return {
        "observedContentType": content_type or "",
        "mode": mode,
        "data": text,
        "encoding": encoding,
    }


def _utc(when: float) -> datetime:
    return datetime.fromtimestamp(when, timezone.utc)


def object_key(prefix: str, endpoint: str, variant: str, when: float, unique: uuid.UUID) -> str:
    moment = _utc(when)
    name = f"{moment:%M-%S}-{moment.microsecond // 1000:03d}-{unique}.jsonl"
    parts = [prefix] if prefix else []
    return "/".join(parts + [endpoint, variant, f"{moment:%Y/%m/%d/%H}", name])


def moto_put_object(
    account_id: str, bucket: str, key: str, body: bytes, kms_key_id: str | None
) -> None:
    """Write an object into moto's S3 backend in-process (the bucket may be in any account);
    with a key, as SSE-KMS under it, else under the bucket's default encryption."""
    from moto.s3.models import s3_backends

    sse = {"encryption": "aws:kms", "kms_key_id": kms_key_id} if kms_key_id else {}
    s3_backends[account_id]["aws"].put_object(bucket, key, body, **sse)


def _is_missing_bucket(exc: Exception) -> bool:
    from moto.s3.exceptions import MissingBucket

    return isinstance(exc, MissingBucket)


class DataCapture:
    """The capture spool and its uploader; see the module docstring."""

    def __init__(
        self,
        spool_dir: Path,
        put_object: PutObject = moto_put_object,
        interval: float = 1.0,
        is_missing_bucket: Callable[[Exception], bool] = _is_missing_bucket,
    ):
        self.spool_dir = Path(spool_dir)
        self.put_object = put_object
        self.interval = interval
        self.is_missing_bucket = is_missing_bucket
        self._lock = threading.Lock()  # guards the active segment
        self._upload_lock = threading.Lock()  # one upload pass at a time
        self._active: Any = None  # open file of the active segment
        self._active_path: Path | None = None
        self._counter = itertools.count()
        self._settings_cache: dict[int, tuple[Mapping, CaptureSettings | None]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.spool_dir.mkdir(parents=True, exist_ok=True)

    # -- configuration ------------------------------------------------------------------------

    def settings_for(self, config: Mapping[str, Any] | None) -> CaptureSettings | None:
        """Parsed settings for an endpoint's DataCaptureConfig (cached per config object).

        An invalid config disables capture for that endpoint with an error in the log, rather
        than failing its invocations.
        """
        if not config:
            return None
        cached = self._settings_cache.get(id(config))
        if cached is not None and cached[0] is config:
            return cached[1]
        try:
            settings = CaptureSettings.parse(config)
        except CaptureConfigError as exc:
            log.error("data capture disabled: %s", exc)
            settings = None
        self._settings_cache[id(config)] = (config, settings)
        return settings

    # -- hot path -----------------------------------------------------------------------------

    def capture(
        self,
        settings: CaptureSettings | None,
        *,
        account_id: str,
        endpoint: str,
        variant: str,
        request_body: bytes,
        request_type: str | None,
        response_body: bytes,
        response_type: str | None,
        inference_id: str | None,
        when: float | None = None,
    ) -> bool:
        """Sample, build and spool one record; True if it was captured (durable on return)."""
        if settings is None or random.random() * 100 >= settings.sampling_percentage:
            return False
        when = time.time() if when is None else when
        record = build_record(
            settings, request_body, request_type, response_body, response_type, inference_id, when
        )
        line = json.dumps(
            {
                "account": account_id,
                "bucket": settings.bucket,
                "prefix": settings.prefix,
                "kms_key_id": settings.kms_key_id,
                "endpoint": endpoint,
                "variant": variant,
                "time": when,
                "record": record,
            },
            separators=(",", ":"),
        )
        with self._lock:
            if self._active is None:
                self._open_segment()
            self._active.write(line.encode("utf-8") + b"\n")
            self._active.flush()
        return True

    def _open_segment(self) -> None:
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._counter):06d}{SEGMENT_SUFFIX}"
        self._active_path = self.spool_dir / name
        self._active = open(self._active_path, "ab")

    # -- upload -------------------------------------------------------------------------------

    def _seal(self) -> None:
        with self._lock:
            if self._active is not None:
                self._active.close()
                self._active = self._active_path = None

    def flush(self) -> int:
        """Seal the active segment and upload every sealed one; returns records uploaded."""
        uploaded = 0
        with self._upload_lock:
            self._seal()
            for segment in sorted(self.spool_dir.glob(f"*{SEGMENT_SUFFIX}")):
                if segment == self._active_path:
                    continue  # opened by a capture() after the seal above
                uploaded += self._upload_segment(segment)
        return uploaded

    def _upload_segment(self, segment: Path) -> int:
        groups: dict[tuple[str, str, str], list[dict]] = {}
        for number, raw in enumerate(segment.read_bytes().splitlines(), 1):
            try:
                entry = json.loads(raw)
                hour = _utc(entry["time"]).strftime("%Y%m%d%H")
                group = (entry["account"], entry["bucket"], entry["prefix"])
                # No key in segments an earlier version spooled: the bucket's default.
                group += (entry.get("kms_key_id"), entry["endpoint"], entry["variant"], hour)
            except (ValueError, KeyError, TypeError):
                # Only a write torn by a crash can look like this; its response was never sent.
                log.warning("skipping unreadable line %d of capture spool %s", number, segment.name)
                continue
            groups.setdefault(group, []).append(entry)
        done = 0
        for group, entries in groups.items():
            account, bucket, prefix, kms_key_id, endpoint, variant, _ = group
            named = (account, bucket, prefix, endpoint, variant, group[-1])
            unique = uuid.uuid5(_KEY_NAMESPACE, segment.name + "/" + "/".join(named))
            key = object_key(prefix, endpoint, variant, entries[0]["time"], unique)
            body = "".join(json.dumps(e["record"], separators=(",", ":")) + "\n" for e in entries)
            try:
                self.put_object(account, bucket, key, body.encode("utf-8"), kms_key_id)
            except Exception as exc:
                if self.is_missing_bucket(exc):
                    log.error(
                        "capture bucket %s no longer exists: dropping %d record(s) for %s/%s",
                        bucket,
                        len(entries),
                        endpoint,
                        variant,
                    )
                    continue
                log.warning("capture upload to s3://%s/%s failed, will retry: %s", bucket, key, exc)
                return done  # keep the segment; the next pass retries all of it idempotently
            done += len(entries)
        segment.unlink()
        return done

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Upload segments left by an earlier run, then upload every ``interval`` seconds."""
        leftovers = sorted(self.spool_dir.glob(f"*{SEGMENT_SUFFIX}"))
        if leftovers:
            log.info("replaying %d data capture spool segment(s)", len(leftovers))
            self._flush_logged()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="capture-upload", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the uploader after a final upload pass."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self._flush_logged()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:  # keep uploading later records whatever one pass hit
            log.exception("data capture upload pass failed")
