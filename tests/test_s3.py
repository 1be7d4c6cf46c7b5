"""Artifacts on S3-compatible storage (issue 14, item 5), against a real S3 API on loopback (moto's server;
no mock of boto3 or HTTP): content-addressed objects written once, presigned URLs so bytes go straight
between client and bucket, a proxy mode, multipart above the threshold, and content checked when read."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import boto3
import httpx
import pytest
from server_helpers import serve_in_thread, use_server

import labtrack as lt
from labtrack.core.errors import ArtifactNotFound, DataDamaged
from labtrack.store import open_blobs
from labtrack.store import s3 as s3_module
from labtrack.store.s3 import S3BlobStore


def _objects(location: str) -> dict[str, bytes]:
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    client = boto3.client("s3", endpoint_url=os.environ["LABTRACK_S3_ENDPOINT_URL"])
    found = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in found}


def test_content_is_stored_once_under_its_sha256_and_read_back(s3_bucket: str) -> None:
    blobs = open_blobs(s3_bucket)
    assert isinstance(blobs, S3BlobStore)
    sha, size = blobs.put_bytes(b"weights")
    assert blobs.put_bytes(b"weights") == (sha, size)  # again: nothing new
    assert sha == hashlib.sha256(b"weights").hexdigest()
    assert _objects(s3_bucket) == {f"team/artifacts/sha256/{sha[:2]}/{sha}": b"weights"}
    with blobs.open(sha) as handle:
        assert handle.read() == b"weights"
    assert blobs.exists(sha) and not blobs.exists("0" * 64)
    with pytest.raises(ArtifactNotFound):
        blobs.open("0" * 64)
    blobs.check()


def test_gc_on_s3_sees_blobs_their_time_and_nothing_else(s3_bucket: str) -> None:
    blobs = open_blobs(s3_bucket)
    sha, _ = blobs.put_bytes(b"old checkpoint")
    bucket = s3_bucket.removeprefix("s3://").split("/")[0]
    boto3.client("s3", endpoint_url=os.environ["LABTRACK_S3_ENDPOINT_URL"]).put_object(
        Bucket=bucket, Key="team/artifacts/sha256/ab/notes.txt", Body=b"not a blob")
    [blob] = list(blobs.list_blobs())
    assert (blob.sha256, blob.size) == (sha, len(b"old checkpoint"))
    assert not blobs.delete_blob(sha, unchanged_since=blob.modified)  # stored at that time: kept
    time.sleep(1.1)  # S3 times are whole seconds
    blobs.put_bytes(b"old checkpoint")  # stored again: its time moves on
    [again] = list(blobs.list_blobs())
    assert again.modified > blob.modified
    assert blobs.delete_blob(sha, unchanged_since=time.time() + 5) and not blobs.exists(sha)


def test_a_large_file_goes_up_in_parts(s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_module, "MULTIPART_ABOVE", 6 * 1024 * 1024)  # S3 parts are 5 MiB at least
    big = tmp_path / "checkpoint.bin"
    big.write_bytes(os.urandom(13 * 1024 * 1024))
    blobs = open_blobs(s3_bucket)
    sha, size = blobs.put_file(big)
    assert size == big.stat().st_size and sha == hashlib.sha256(big.read_bytes()).hexdigest()
    with blobs.open(sha) as handle:
        assert handle.read() == big.read_bytes()


def test_a_server_on_s3_hands_out_presigned_urls_so_bytes_skip_it(s3_bucket: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_in_thread(str(tmp_path / "db"), artifacts=s3_bucket) as served:
        use_server(served, monkeypatch)
        with lt.start_run("s3") as run:
            run.log_text("to the bucket", "notes/a.txt")
        lt.flush()
        sha = hashlib.sha256(b"to the bucket").hexdigest()
        assert _objects(s3_bucket) == {f"team/artifacts/sha256/{sha[:2]}/{sha}": b"to the bucket"}
        metrics = httpx.get(served.url + "/metrics", headers={"Authorization": f"Bearer {served.token}"}).text
        assert 'route="/api/v1/blobs/{sha256}/upload",status="200"' in metrics
        assert 'method="PUT",route="/api/v1/blobs/{sha256}"' not in metrics  # no content went through the server
        assert lt.get_run(run.id).open_artifact("notes/a.txt").read() == b"to the bucket"
        answer = httpx.get(f"{served.url}/api/v1/blobs/{sha}", headers={"Authorization": f"Bearer {served.token}"})
        assert answer.status_code == 307 and "X-Amz-Signature" in answer.headers["location"]
        assert "Authorization" not in answer.headers  # the token never travels to the bucket
        direct = httpx.get(answer.headers["location"])
        assert direct.content == b"to the bucket" and direct.headers["content-disposition"] == "attachment"


def test_a_server_that_proxies_artifacts_passes_the_bytes_itself(s3_bucket: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_in_thread(str(tmp_path / "db"), artifacts=s3_bucket, proxy_artifacts=True) as served:
        use_server(served, monkeypatch)
        with lt.start_run("proxied") as run:
            run.log_text("through the server", "a.txt")
        assert lt.get_run(run.id).open_artifact("a.txt").read() == b"through the server"
        metrics = httpx.get(served.url + "/metrics", headers={"Authorization": f"Bearer {served.token}"}).text
        assert 'method="PUT",route="/api/v1/blobs/{sha256}",status="200"' in metrics
        sha = hashlib.sha256(b"through the server").hexdigest()
        answer = httpx.get(f"{served.url}/api/v1/blobs/{sha}", headers={"Authorization": f"Bearer {served.token}"})
        assert answer.status_code == 200 and answer.headers["content-disposition"] == "attachment"


def test_content_replaced_in_the_bucket_is_refused_when_read(s3_bucket: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_in_thread(str(tmp_path / "db"), artifacts=s3_bucket) as served:
        use_server(served, monkeypatch)
        with lt.start_run("tampered") as run:
            run.log_text("the real model", "model.txt")
        lt.flush()
        sha = hashlib.sha256(b"the real model").hexdigest()
        bucket = s3_bucket.removeprefix("s3://").split("/")[0]
        boto3.client("s3", endpoint_url=os.environ["LABTRACK_S3_ENDPOINT_URL"]).put_object(
            Bucket=bucket, Key=f"team/artifacts/sha256/{sha[:2]}/{sha}", Body=b"a swapped model")
        with pytest.raises(DataDamaged, match="does not match its sha256"):
            lt.get_run(run.id).open_artifact("model.txt")
