"""S3 push/pull benchmarks for dp_models: every target measured as a ratio, in one run.

Run from the repository root (the test extra brings moto's server, boto3 and obstore)::

    .venv/bin/python benchmarks/bench_s3.py [--size-mb 1024] [--repeats 2] \\
        [--out benchmarks/results/s3.md]

Everything goes through one real S3-compatible server on loopback (moto's server mode,
``dp_models.testing.s3``). Row 1 compares ``dp_models.push`` of one large file (verified
against its pin, uploaded as a multipart upload completed only when the bytes hashed while
they were read are the pinned ones) with boto3's own ``upload_file`` of the same file;
row 2 compares ``dp_models.pull`` of that object (hashed while it streams, fsynced,
renamed into place) with boto3's ``download_file``, both with their default settings;
row 2b is ``download_file`` made to use one GET, plus the sha256 pass a script would need.
Rows 3 measure obstore, the other client considered, on the same objects, and row 4 the
import cost of each client in a fresh interpreter. The exit status is 1 when a target is
missed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import (
    MiB,
    Row,
    cpu_model,
    duration,
    emit,
    environment,
    log,
    one_file_catalog,
    options,
    render,
    timed,
    write_random,
)

import dp_models
from dp_models._settings import ENV_CACHE_DIR
from dp_models.testing.s3 import S3Server

BIG_NAME = "bench_s3_big"
BIG_PATH = "bench/big.bin"


def mb_s(nbytes: int, seconds: float) -> str:
    return f"{nbytes / seconds / 1e6:.0f} MB/s"


def _sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return str(hashlib.file_digest(f, "sha256").hexdigest())


def _delete(client: Any, bucket: str, prefix: str) -> None:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    if listed:
        client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in listed]}
        )


def best(times: Sequence[float]) -> float:
    return min(times)


def interleaved(repeats: int, *steps: Callable[[], float]) -> list[list[float]]:
    """Each step once per round, the order reversed every other round (what goes first
    meets a server that has just grown): the times per step."""
    found: list[list[float]] = [[] for _ in steps]
    for r in range(repeats):
        order = list(range(len(steps)))
        if r % 2:
            order.reverse()
        for i in order:
            found[i].append(steps[i]())
            log(f"  round {r + 1}: step {i + 1}: {found[i][-1]:.2f} s")
    return found


def bench(work: Path, server: S3Server, size: int, repeats: int) -> list[Row]:
    import boto3
    from boto3.s3.transfer import TransferConfig

    client = server.client()
    bucket = server.bucket(client)
    site = work / "site"
    big = site / BIG_PATH
    log(f"writing {size // MiB} MiB of random bytes to {big}")
    expected = write_random(big, size)
    catalog = one_file_catalog(work / "catalog", BIG_NAME, BIG_PATH, expected, size)
    store = f"s3://{bucket}/ours"
    # the root's verification is what push does first: warm the digest cache once, so the
    # rounds time the upload (a dry run verifies and sends nothing)
    dp_models.push([BIG_NAME], to=store, root=site, catalog=catalog, dry_run=True)
    theirs = boto3.client(
        "s3", endpoint_url=server.url, region_name="us-east-1"
    )  # boto3's defaults, as a script would make it

    def push() -> float:
        _delete(client, bucket, "ours/")
        seconds, report = timed(
            lambda: dp_models.push([BIG_NAME], to=store, root=site, catalog=catalog, progress=False)
        )
        if report.bytes != size:
            raise SystemExit(f"bench_s3: push sent {report.bytes} bytes, not {size}")
        return seconds

    def upload_file() -> float:
        _delete(client, bucket, "theirs/")
        seconds, _ = timed(lambda: theirs.upload_file(str(big), bucket, "theirs/big.bin"))
        return seconds

    log(f"1: push vs upload_file, {repeats} rounds")
    ours_up, theirs_up = interleaved(repeats, push, upload_file)
    _delete(client, bucket, "theirs/")

    pulled = work / "node"
    downloaded = work / "downloaded.bin"

    def pull() -> float:
        shutil.rmtree(pulled, ignore_errors=True)
        seconds, report = timed(
            lambda: dp_models.pull(
                [BIG_NAME], root=pulled, mirrors=[store], catalog=catalog, progress=False
            )
        )
        if report.artifacts[0].status != "fetched" or (pulled / BIG_PATH).stat().st_size != size:
            raise SystemExit("bench_s3: the pull did not fetch the file whole")
        return seconds

    def download_file() -> float:
        downloaded.unlink(missing_ok=True)
        seconds, _ = timed(
            lambda: theirs.download_file(bucket, f"ours/{BIG_PATH}", str(downloaded))
        )
        return seconds

    one_get = TransferConfig(multipart_threshold=1 << 62)

    def download_file_one_get_and_hash() -> float:
        downloaded.unlink(missing_ok=True)

        def run() -> None:
            theirs.download_file(bucket, f"ours/{BIG_PATH}", str(downloaded), Config=one_get)
            if _sha256_of(downloaded) != expected:
                raise SystemExit("bench_s3: download_file fetched other bytes")

        seconds, _ = timed(run)
        return seconds

    log(f"2: pull vs download_file (default, and one GET + sha256), {repeats} rounds")
    ours_down, theirs_down, theirs_one = interleaved(
        repeats, pull, download_file, download_file_one_get_and_hash
    )
    rows = [
        Row(
            "1",
            f"`push` of one {size // MiB} MiB file to the loopback S3 server (root verified "
            "through the digest cache, then a multipart upload of 8 MiB parts with CRC32s, 10 "
            "at a time, completed only when the file is still the one verified) vs boto3 "
            "`upload_file` of the same file (default TransferConfig: the same parts)",
            f"{mb_s(size, best(ours_up))} vs {mb_s(size, best(theirs_up))}: "
            f"**{best(theirs_up) / best(ours_up):.2f}**",
            "≥ 0.90",
            best(theirs_up) / best(ours_up) >= 0.9,
        ),
        Row(
            "2",
            "`pull` of that object into an empty root (one GET, hashed while it streams, "
            "fsynced, renamed into place) vs boto3 `download_file` of it (default "
            "TransferConfig: 8 MiB ranged GETs, 10 at a time)",
            f"{mb_s(size, best(ours_down))} vs {mb_s(size, best(theirs_down))}: "
            f"**{best(theirs_down) / best(ours_down):.2f}**",
            "≥ 0.90",
            best(theirs_down) / best(ours_down) >= 0.9,
        ),
        Row(
            "2b",
            "same pull vs `download_file` told to use one GET (`multipart_threshold` above the "
            "size), followed by the sha256 pass a script needs for pull's check (no fsync)",
            f"{mb_s(size, best(ours_down))} vs {mb_s(size, best(theirs_one))}: "
            f"**{best(theirs_one) / best(ours_down):.2f}**",
            "none: moto serves one GET far faster than ranges (row 2)",
            None,
        ),
    ]
    rows += bench_obstore(work, server, bucket, big, expected, size, repeats)
    return rows


def bench_obstore(
    work: Path, server: S3Server, bucket: str, big: Path, expected: str, size: int, repeats: int
) -> list[Row]:
    from obstore.store import S3Store

    store = S3Store(
        bucket,
        endpoint=server.url,
        region="us-east-1",
        access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        client_options={"allow_http": True},
    )
    import obstore

    def put() -> float:
        def run() -> None:
            with open(big, "rb") as f:
                obstore.put(store, "obstore/big.bin", f, chunk_size=16 * MiB)

        seconds, _ = timed(run)
        return seconds

    target = work / "obstore.bin"

    def get() -> float:
        def run() -> None:
            h = hashlib.sha256()
            with open(target, "wb") as f:
                for chunk in obstore.get(store, "obstore/big.bin").stream(min_chunk_size=MiB):
                    f.write(chunk)
                    h.update(chunk)
            if h.hexdigest() != expected:
                raise SystemExit("bench_s3: obstore fetched other bytes")

        seconds, _ = timed(run)
        return seconds

    log(f"3: obstore put and get (stream + sha256), {repeats} rounds")
    puts, gets = interleaved(repeats, put, get)
    return [
        Row(
            "3",
            "obstore `put` of the same file (16 MiB parts) and `get(...).stream()` of it "
            "into a file with sha256, for comparison with rows 1 and 2",
            f"put {mb_s(size, best(puts))}, get {mb_s(size, best(gets))}",
            "none: the client not chosen",
            None,
        )
    ]


def bench_imports(server: S3Server, calls: int) -> list[Row]:
    snippets = {
        "boto3": "import boto3; boto3.client('s3', endpoint_url=URL, region_name='us-east-1')",
        "obstore": "from obstore.store import S3Store; S3Store('b', endpoint=URL, "
        "region='us-east-1', client_options={'allow_http': True})",
        "nothing": "pass",
    }
    found: dict[str, float] = {}
    for name, code in snippets.items():
        times = []
        for _ in range(calls):
            seconds, _ = timed(
                lambda code=code: subprocess.run(
                    [sys.executable, "-c", code.replace("URL", repr(server.url))], check=True
                )
            )
            times.append(seconds)
        found[name] = statistics.median(times)
    return [
        Row(
            "4",
            "a fresh interpreter importing the client and making an S3 client/store (what a "
            "`dp-models push/pull` process pays once)",
            f"boto3 {duration(found['boto3'])}, obstore {duration(found['obstore'])} "
            f"(median of {calls}; a bare interpreter start: {duration(found['nothing'])})",
            "none: the cost of choosing boto3",
            None,
        )
    ]


def notes(args: argparse.Namespace, work: Path) -> list[str]:
    import boto3
    import moto
    import obstore

    return [
        f"machine: {cpu_model()}, {os.cpu_count()} cores visible; "
        f"{platform.system()} {platform.release()}",
        f"Python {platform.python_version()}, dp_models {dp_models.__version__}, boto3 "
        f"{boto3.__version__}, obstore {obstore.__version__}, moto {moto.__version__} "
        "(server mode on 127.0.0.1; it keeps objects in memory and serves each ranged GET "
        "by reading the whole object: which is why row 2's baseline is slow)",
        f"files in {work.parent} (page cache); best of {args.repeats} interleaved rounds",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = options(__doc__, sized="the file")
    parser.add_argument(
        "--import-calls", type=int, default=5, help="interpreters timed for row 4 (default 5)"
    )
    args = parser.parse_args(argv)
    if min(args.size_mb, args.repeats, args.import_calls) < 1:
        parser.error("sizes, counts and repeats must be positive")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dp-models-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        server = S3Server(work / "moto.log")
        try:
            no_config = str(work / "no-aws-config")
            with environment(
                drop=("AWS_",),
                **server.environ(),
                AWS_CONFIG_FILE=no_config,
                AWS_SHARED_CREDENTIALS_FILE=no_config,
                **{ENV_CACHE_DIR: str(work / "cache")},
            ):
                rows = bench(work, server, args.size_mb * MiB, args.repeats)
                rows += bench_imports(server, args.import_calls)
        finally:
            server.stop()
        report = render(
            "dp_models S3 push/pull benchmark",
            "bench_s3.py",
            time.perf_counter() - start,
            notes(args, work),
            rows,
        )
    return emit(report, rows, args.out)


if __name__ == "__main__":
    sys.exit(main())
