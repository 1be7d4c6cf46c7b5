"""Artifact content on S3-compatible object storage (``s3://bucket/prefix``; the ``s3`` extra: boto3).

A blob is the object ``<prefix>/sha256/<2 hex>/<64 hex>``, written with ``If-None-Match: *`` and the
sha256 as its checksum, so identical content is stored once, an object never changes once written, and
S3 refuses bytes that are not the content the key names. Above ``MULTIPART_ABOVE`` a file goes up in
parts (boto3's transfer manager), checked the same way.

Credentials and the endpoint come from boto3's usual sources (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``,
instance roles; ``AWS_ENDPOINT_URL`` or ``LABTRACK_S3_ENDPOINT_URL`` for a non-AWS store such as MinIO or
Ceph) — never from the location, which is shown and recorded.

A tracking server on S3 hands clients presigned URLs (``upload_url``, ``download_url``): bytes go between
client and bucket directly, signed for one object and a few minutes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

from labtrack.core.errors import ArtifactNotFound, InvalidInput, StoreError
from labtrack.store.blobs import BlobInfo, BlobStore, check_sha256, content_digest, discard, is_sha256

__all__ = ["MULTIPART_ABOVE", "PRESIGN_SECONDS", "S3BlobStore"]

MULTIPART_ABOVE = 100 * 1024 * 1024
PRESIGN_SECONDS = 900
_CHUNK = 1 << 20


def _checksum(sha256: str) -> str:
    """The sha256 as S3's ``x-amz-checksum-sha256`` wants it: base64 of the digest's bytes."""
    return base64.b64encode(bytes.fromhex(sha256)).decode("ascii")


class S3BlobStore(BlobStore):
    def __init__(self, location: str) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise InvalidInput(f"artifacts {location!r}: S3 storage needs the s3 extra: pip install 'labtrack[s3]'",
                               field="artifacts") from exc
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        if not bucket:
            raise InvalidInput(f"artifacts {location!r}: write s3://bucket or s3://bucket/prefix", field="artifacts")
        self.url = location.rstrip("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        endpoint = os.environ.get("LABTRACK_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None
        self._s3 = boto3.client("s3", endpoint_url=endpoint,
                                config=Config(signature_version="s3v4", connect_timeout=5, read_timeout=60,
                                              retries={"max_attempts": 5, "mode": "standard"}))
        from botocore.exceptions import BotoCoreError, ClientError

        self._errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError)

    def key(self, sha256: str) -> str:
        name = f"sha256/{sha256[:2]}/{check_sha256(sha256)}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def _failed(self, verb: str, exc: Exception) -> StoreError:
        return StoreError(f"cannot {verb} {self.url}: {exc}")

    @staticmethod
    def _code(exc: Exception) -> str:
        return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))

    # -- writing ------------------------------------------------------------------------------------

    def put_file(self, path: str | os.PathLike[str], *, move: bool = False) -> tuple[str, int]:
        try:
            sha, size = content_digest(path)
            if not self.refresh(sha):
                if size > MULTIPART_ABOVE:
                    from boto3.s3.transfer import TransferConfig

                    self._s3.upload_file(os.fspath(path), self.bucket, self.key(sha),
                                         ExtraArgs={"ChecksumAlgorithm": "SHA256"},
                                         Config=TransferConfig(multipart_threshold=MULTIPART_ABOVE))
                else:
                    with open(path, "rb") as source:
                        self._put(sha, source)
        except OSError as exc:
            raise StoreError(f"cannot store artifact {os.fspath(path)!r} in {self.url}: {exc}") from exc
        if move:
            discard(path)
        return sha, size

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        sha = hashlib.sha256(data).hexdigest()
        if not self.refresh(sha):
            import io

            self._put(sha, io.BytesIO(data))
        return sha, len(data)

    def _put(self, sha256: str, body: Any) -> None:
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self.key(sha256), Body=body, IfNoneMatch="*",
                                ChecksumSHA256=_checksum(sha256))
        except self._errors as exc:
            if self._code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return  # stored meanwhile by someone else: the same bytes
            raise self._failed("store an artifact in", exc) from exc

    def refresh(self, sha256: str) -> bool:
        """If the blob exists, make its time now (it is being stored again: ``labtrack gc`` must wait) and
        say so; a server-side copy onto itself, no bytes through here."""
        if not self.exists(sha256):
            return False
        key = self.key(sha256)
        try:
            self._s3.copy_object(Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": key},
                                 MetadataDirective="REPLACE", ContentType="application/octet-stream")
        except self._errors:
            pass  # e.g. over 5 GB (a copy cannot be one request): only as safe from gc as its first storing
        return True

    def check(self) -> None:
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except self._errors as exc:
            raise StoreError(f"artifacts {self.url}: the bucket does not answer ({exc}); check the bucket name, "
                             "the credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE) and the endpoint "
                             "(LABTRACK_S3_ENDPOINT_URL)") from exc

    # -- reading ------------------------------------------------------------------------------------

    def open(self, sha256: str) -> BinaryIO:
        try:
            answer = self._s3.get_object(Bucket=self.bucket, Key=self.key(sha256))
        except self._errors as exc:
            if self._code(exc) in ("NoSuchKey", "404"):
                raise ArtifactNotFound(f"artifact blob {sha256} is missing from {self.url}") from exc
            raise self._failed("read", exc) from exc
        spooled = tempfile.SpooledTemporaryFile(max_size=8 * _CHUNK)
        for block in answer["Body"].iter_chunks(_CHUNK):
            spooled.write(block)
        spooled.seek(0)
        return cast(BinaryIO, spooled)

    def exists(self, sha256: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self.key(sha256))
        except self._errors as exc:
            if self._code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._failed("read", exc) from exc
        return True

    def list_blobs(self) -> Iterator[BlobInfo]:
        start = f"{self.prefix}/sha256/" if self.prefix else "sha256/"
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    name = item["Key"].rsplit("/", 1)[-1]
                    if is_sha256(name) and item["Key"] == self.key(name):
                        yield BlobInfo(name, int(item["Size"]), item["LastModified"].timestamp())
        except self._errors as exc:
            raise self._failed("list", exc) from exc

    def delete_blob(self, sha256: str, *, unchanged_since: float) -> bool:
        key = self.key(sha256)
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=key)
            if head["LastModified"].timestamp() >= unchanged_since:
                return False
            self._s3.delete_object(Bucket=self.bucket, Key=key)
        except self._errors as exc:
            if self._code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._failed("remove a blob from", exc) from exc
        return True

    # -- presigned URLs, for a tracking server's clients --------------------------------------------

    def upload_url(self, sha256: str) -> tuple[str, dict[str, str]]:
        """A URL (and the headers to send with it) that stores exactly this content under its key, once."""
        checksum = _checksum(sha256)
        url = self._s3.generate_presigned_url(
            "put_object", ExpiresIn=PRESIGN_SECONDS,
            Params={"Bucket": self.bucket, "Key": self.key(sha256), "ChecksumSHA256": checksum, "IfNoneMatch": "*"})
        return url, {"x-amz-checksum-sha256": checksum, "If-None-Match": "*"}

    def download_url(self, sha256: str) -> str:
        """A URL that downloads the content as an attachment no browser renders."""
        return str(self._s3.generate_presigned_url(
            "get_object", ExpiresIn=PRESIGN_SECONDS,
            Params={"Bucket": self.bucket, "Key": self.key(sha256), "ResponseContentDisposition": "attachment",
                    "ResponseContentType": "application/octet-stream"}))

