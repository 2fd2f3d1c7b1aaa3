"""dp-models push / pull with an S3-compatible store: a real server (moto's server mode) on
loopback, reached with the standard AWS settings; no mock of boto3 or of HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

import dp_models
from dp_models import (
    ConfigurationError,
    DestinationUnavailableError,
    ModelManager,
    NotPushableError,
    PulledFileMismatchError,
    PushedFileMismatchError,
    SourceUnavailableError,
    network_guard,
)
from dp_models import _push as push_module
from dp_models import _s3 as s3_module
from dp_models._lock import Lock
from dp_models._settings import ENV_MIRRORS
from dp_models._transfer import _PutMismatchError
from dp_models._urls import parse_s3_url
from dp_models.testing import fake_catalog_dir, fake_models_root, run_cli
from dp_models.testing.faults import FaultProxy
from dp_models.testing.s3 import SECRET_KEY

from .fakeroots import spacy_dir_catalog

#: a file, a directory (spaCy, given a directory under the root: the packaged spec names an
#: installed distribution), a directory holding a pinned file (MiniLM), a spec that
#: requires another (yolo11n_detector -> bytetrack_tracker)
NAMES = ["emonet_8", "spacy_en_core_web_sm", "all_minilm_l6_v2", "yolo11n_detector"]
SMALL = "emonet_8"
SMALL_PATH = "visual/emonet/emonet_8.pth"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A verified fake root of NAMES, with its catalog copy and lock."""
    base = tmp_path_factory.mktemp("s3-site")
    return fake_models_root(
        base / "root",
        NAMES,
        catalog=spacy_dir_catalog(base / "catalog"),
        substitute=["emonet_8"],  # its class is the processor's, not installed here
    )


def catalog_of(root: Path) -> Path:
    return fake_catalog_dir(root)


def keys(s3: Any, bucket: str) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", ()))


def files_under(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ".dp-models-pull" not in p.parts and ".dp_models" not in p.parts
    )


def test_push_a_root_then_pull_it_into_an_empty_one_then_doctor_and_load(
    s3: Any, site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = s3.bucket()
    store = f"s3://{bucket}/site/v1"
    catalog = str(catalog_of(site))
    common = ["--catalog", catalog]
    assert run_cli(["push", *NAMES, "--root", str(site), "--to", store, "--json", *common]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["reference"] == store
    assert {a["status"] for a in report["artifacts"]} == {"pushed"}
    assert "bytetrack_tracker" in {a["spec"] for a in report["artifacts"]}  # required
    stored = keys(s3, bucket)
    assert stored == sorted(
        [f"site/v1/{f}" for f in files_under(site)] + ["site/v1/catalog.lock.json"]
    )
    # the manifest is the lock of what was pushed, each directory with its manifest
    raw = s3.client().get_object(Bucket=bucket, Key="site/v1/catalog.lock.json")["Body"].read()
    manifest = Lock.parse(raw, Path("catalog.lock.json"))
    site_lock = Lock.read(Path(catalog) / "catalog.lock.json")
    assert set(manifest.artifacts) == {a["path"] for a in report["artifacts"]}
    for path, entry in manifest.artifacts.items():
        assert entry.sha256 == site_lock.artifacts[path].sha256
        assert (entry.files is not None) == (entry.kind == "dir")
    # a node pulls it into an empty root: doctor is ok, every spec loads offline
    root = tmp_path / "node"
    argv = ["pull", *NAMES, "--root", str(root), "--from", store, *common]
    assert run_cli(argv) == 0
    assert "pulled 5 artifacts" in capsys.readouterr().out
    assert files_under(root) == files_under(site)
    assert run_cli(["doctor", *NAMES, "--root", str(root), *common]) == 0
    mm = ModelManager(models_root=root, catalog=catalog)
    with network_guard(NAMES):
        for name in NAMES:
            assert mm.load(name) is not None
    # the text output names where to pull from
    assert run_cli(["push", SMALL, "--root", str(site), "--to", store, *common]) == 0
    out = capsys.readouterr().out
    assert "pushed 0 artifacts" in out and f"--from {store}" in out


def test_a_second_push_sends_nothing_and_merges_the_manifest(
    s3: Any, site: Path, tmp_path: Path
) -> None:
    bucket = s3.bucket()
    store = f"s3://{bucket}/models"
    catalog = catalog_of(site)
    first = dp_models.push([SMALL], to=store, root=site, catalog=catalog)
    assert [a["status"] for a in first.artifacts] == ["pushed"] and first.bytes > 0
    again = dp_models.push([SMALL], to=store, root=site, catalog=catalog)
    assert [a["status"] for a in again.artifacts] == ["present"] and again.bytes == 0
    dp_models.push(["spacy_en_core_web_sm"], to=store, root=site, catalog=catalog)
    mirror = s3_module.S3Mirror(store)
    manifest = mirror.manifest()
    assert manifest is not None
    assert {SMALL_PATH, "text/spacy/en_core_web_sm-3.8.0"} <= set(manifest.artifacts)
    dry = dp_models.push(["all_minilm_l6_v2"], to=store, root=site, catalog=catalog, dry_run=True)
    assert [a["status"] for a in dry.artifacts] == ["planned"] and dry.reference is None
    assert not any("minilm" in k.lower() for k in keys(s3, bucket))


def test_pull_lists_a_directory_from_the_store_manifest(
    s3: Any, site: Path, tmp_path: Path
) -> None:
    """A site lock without directory manifests: the store's manifest lists the files, and
    the directory digest the lock pins decides."""
    bucket = s3.bucket()
    store = f"s3://{bucket}/m"
    dp_models.push(["spacy_en_core_web_sm"], to=store, root=site, catalog=catalog_of(site))
    catalog = tmp_path / "catalog"
    shutil.copytree(catalog_of(site), catalog)
    raw = json.loads((catalog / "catalog.lock.json").read_text())
    for entry in raw["artifacts"].values():
        entry.pop("files", None)
    (catalog / "catalog.lock.json").write_text(json.dumps(raw))
    root = tmp_path / "root"
    report = dp_models.pull(["spacy_en_core_web_sm"], root=root, mirrors=[store], catalog=catalog)
    assert [a.status for a in report.artifacts] == ["fetched"]
    assert (
        run_cli(["doctor", "spacy_en_core_web_sm", "--root", str(root), "--catalog", str(catalog)])
        == 0
    )


def test_a_lock_without_directory_manifests_pushes_them_listed_from_the_root(
    s3: Any, site: Path, tmp_path: Path
) -> None:
    """A pinned directory whose lock entry has no manifest: push lists it from the root,
    holds it to the directory digest, and the store's manifest then carries its files; a
    directory of other files is refused before anything is sent."""
    catalog = shutil.copytree(catalog_of(site), tmp_path / "catalog")
    raw = json.loads((catalog / "catalog.lock.json").read_text())
    spacy = "text/spacy/en_core_web_sm-3.8.0"
    files = raw["artifacts"][spacy].pop("files")
    (catalog / "catalog.lock.json").write_text(json.dumps(raw))
    bucket = s3.bucket()
    store = f"s3://{bucket}/m"
    report = dp_models.push(["spacy_en_core_web_sm"], to=store, root=site, catalog=catalog)
    assert [a["status"] for a in report.artifacts] == ["pushed"]
    manifest = s3_module.S3Mirror(store).manifest()
    assert manifest is not None
    entry = manifest.artifacts[spacy]
    assert entry.files is not None
    assert {rel: (f.sha256, f.size) for rel, f in entry.files.items()} == {
        rel: (f["sha256"], f["size"]) for rel, f in files.items()
    }
    root = shutil.copytree(site, tmp_path / "root")
    (root / spacy / "extra.txt").write_text("not in the pinned directory")
    with pytest.raises(NotPushableError, match="not the pinned directory digest"):
        dp_models.push(["spacy_en_core_web_sm"], to=f"s3://{bucket}/n", root=root, catalog=catalog)
    assert not [k for k in keys(s3, bucket) if k.startswith("n/")]


def test_mirrors_from_the_environment_may_be_stores(
    s3: Any, site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3.bucket()
    dp_models.push([SMALL], to=f"s3://{bucket}/a", root=site, catalog=catalog_of(site))
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(ENV_MIRRORS, f"{empty} s3://{bucket}/a")
    report = dp_models.pull([SMALL], root=tmp_path / "root", catalog=catalog_of(site))
    assert report.artifacts[0].files[0].source == f"s3://{bucket}/a"
    monkeypatch.setenv(ENV_MIRRORS, "s3://bad:bucket@x/a")
    with pytest.raises(ConfigurationError, match="AWS settings"):
        dp_models.pull([SMALL], root=tmp_path / "root", catalog=catalog_of(site))


# -- what is pushed is what verified ---------------------------------------------------------


@pytest.mark.adversarial
def test_a_root_that_does_not_verify_is_refused_before_anything_is_sent(
    s3: Any, site: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    shutil.copytree(site, root)
    target = root / SMALL_PATH
    data = bytearray(target.read_bytes())
    data[0] ^= 1
    target.write_bytes(bytes(data))
    (root / "text/spacy/en_core_web_sm-3.8.0/meta.json").unlink()
    bucket = s3.bucket()
    with pytest.raises(NotPushableError, match="not the pinned") as caught:
        dp_models.push(
            [SMALL, "spacy_en_core_web_sm"],
            to=f"s3://{bucket}/x",
            root=root,
            catalog=catalog_of(site),
        )
    assert set(caught.value.paths) == {SMALL_PATH, "text/spacy/en_core_web_sm-3.8.0"}
    assert caught.value.destination == f"s3://{bucket}/x"
    assert keys(s3, bucket) == []


@pytest.mark.adversarial
def test_unpinned_artifacts_are_refused(s3: Any, site: Path, tmp_path: Path) -> None:
    catalog = shutil.copytree(catalog_of(site), tmp_path / "catalog")
    raw = json.loads((catalog / "catalog.lock.json").read_text())
    raw["artifacts"].pop(SMALL_PATH)
    (catalog / "catalog.lock.json").write_text(json.dumps(raw))
    bucket = s3.bucket()
    with pytest.raises(NotPushableError, match=r"(?s)cannot push.*not pinned.*pin them"):
        dp_models.push([SMALL], to=f"s3://{bucket}/x", root=site, catalog=catalog)
    assert keys(s3, bucket) == []


@pytest.mark.adversarial
@pytest.mark.parametrize("size", [1000, 11 << 20])  # one PUT; a multipart upload of 3 parts
def test_bytes_that_are_not_the_pin_never_become_visible_in_the_store(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    bucket = s3.bucket()
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(size))
    transfers = s3_module.Transfers(chunksize=5 << 20)  # S3's smallest part
    dest = s3_module.S3Destination(f"s3://{bucket}/p", transfers=transfers)
    fd = os.open(path, os.O_RDONLY)
    sent: list[int] = []
    try:
        with pytest.raises(_PutMismatchError) as caught:
            dest.put("a/f.bin", fd, size, "0" * 64, sent.append)
        assert caught.value.size == size and caught.value.actual != "0" * 64
        client = s3.client()
        assert keys(s3, bucket) == []
        assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        # the right digest goes through, and has() knows it afterwards
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert not dest.has("a/f.bin", size, digest)
        sent.clear()
        dest.put("a/f.bin", fd, size, digest, sent.append)
        assert sum(sent) == size
        assert dest.has("a/f.bin", size, digest) and not dest.has("a/f.bin", size, "1" * 64)
        got = client.get_object(Bucket=bucket, Key="p/a/f.bin")["Body"].read()
        assert hashlib.sha256(got).hexdigest() == digest
    finally:
        os.close(fd)
        dest.close()


@pytest.mark.adversarial
@pytest.mark.parametrize("trust", ["cached", "always"])
def test_a_file_changed_during_a_multipart_upload_is_never_completed(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trust: str
) -> None:
    """After a part is sent, the file is rewritten (same size): trusting the digest cache,
    its identity moved; hashing as it is read, its bytes differ. Either way the upload is
    aborted: no object, no multipart upload left."""
    from dp_models._digest import stat_key

    size = 11 << 20
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(size))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    bucket = s3.bucket()
    dest = s3_module.S3Destination(
        f"s3://{bucket}/p", transfers=s3_module.Transfers(chunksize=5 << 20, concurrency=1)
    )
    real = s3_module.S3Destination._part

    def rewrite_after_the_first(
        self: Any, rel: str, key: str, upload: str, n: int, data: bytes
    ) -> Any:
        sent = real(self, rel, key, upload, n, data)
        if n == 1:
            time.sleep(0.01)  # a later ctime, whatever the clock's granularity
            path.write_bytes(os.urandom(size))
        return sent

    monkeypatch.setattr(s3_module.S3Destination, "_part", rewrite_after_the_first)
    fd = os.open(path, os.O_RDONLY)
    try:
        identity = stat_key(os.fstat(fd))
        unchanged = (lambda: stat_key(os.fstat(fd)) == identity) if trust == "cached" else None
        with pytest.raises(_PutMismatchError) as caught:
            dest.put("a/f.bin", fd, size, digest, lambda n: None, unchanged=unchanged)
        if trust == "cached":
            assert caught.value.actual is None  # not hashed: the identity moved
        else:
            assert caught.value.actual not in (None, digest)
    finally:
        os.close(fd)
        dest.close()
    assert keys(s3, bucket) == []
    assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.adversarial
@pytest.mark.parametrize("policy", ["cached", "always"])
def test_a_file_that_changes_under_the_push_is_not_published(
    s3: Any, site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    monkeypatch.setenv("DP_MODELS_VERIFY", policy)
    root = tmp_path / "root"
    shutil.copytree(site, root)
    real = push_module._verifies

    def verifies_then_changes(base: Path, item: Any, hasher: Any) -> bool:
        ok = real(base, item, hasher)
        target = base / SMALL_PATH
        target.write_bytes(b"changed after it verified" + target.read_bytes()[25:])
        return ok

    monkeypatch.setattr(push_module, "_verifies", verifies_then_changes)
    bucket = s3.bucket()
    with pytest.raises(PushedFileMismatchError, match="changed under the push") as caught:
        dp_models.push([SMALL], to=f"s3://{bucket}/x", root=root, catalog=catalog_of(site))
    assert caught.value.path == SMALL_PATH and caught.value.expected != caught.value.actual
    assert keys(s3, bucket) == []  # neither the file nor a manifest


# -- pulling from a store that lies or fails -----------------------------------------------------


@pytest.mark.adversarial
@pytest.mark.parametrize("how", ["other-bytes", "other-published"])
def test_a_store_object_that_is_not_the_pin_is_refused(
    s3: Any, site: Path, tmp_path: Path, how: str
) -> None:
    bucket = s3.bucket()
    store = f"s3://{bucket}/x"
    dp_models.push([SMALL], to=store, root=site, catalog=catalog_of(site))
    data = bytearray((site / SMALL_PATH).read_bytes())
    if how == "other-bytes":  # same size, one bit flipped, metadata says the pinned digest
        data[-1] ^= 1
        meta = {"sha256": hashlib.sha256((site / SMALL_PATH).read_bytes()).hexdigest()}
    else:  # the right bytes, but the store publishes another digest for them
        meta = {"sha256": "0" * 64}
    s3.client().put_object(Bucket=bucket, Key=f"x/{SMALL_PATH}", Body=bytes(data), Metadata=meta)
    root = tmp_path / "root"
    with pytest.raises(PulledFileMismatchError) as caught:
        dp_models.pull([SMALL], root=root, mirrors=[store], catalog=catalog_of(site))
    assert caught.value.source == store
    assert files_under(root) == []
    assert [p for p in root.rglob(".*") if ".dp-models-pull" not in p.parts] == []


def profile_s3(**settings: str) -> str:
    """An AWS config file's default profile with these ``s3`` settings."""
    lines = "".join(f"    {k} = {v}\n" for k, v in settings.items())
    return f"[default]\ns3 =\n{lines}"


def test_the_profile_s3_settings_turn_on_ranged_gets_written_in_order(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, site: Path
) -> None:
    """With the AWS CLI's multipart settings in the profile, an object at least
    multipart_threshold large comes in ranged GETs of multipart_chunksize bytes,
    max_concurrent_requests at a time, written (and hashed) in order."""
    bucket = s3.bucket()
    store = f"s3://{bucket}/x"
    dp_models.push(["spacy_en_core_web_sm"], to=store, root=site, catalog=catalog_of(site))
    config = Path(os.environ["AWS_CONFIG_FILE"])
    config.write_text(
        profile_s3(
            multipart_threshold="10KB", multipart_chunksize="7777", max_concurrent_requests="3"
        )
    )
    assert s3_module.S3Mirror(store).transfers == s3_module.Transfers(10 << 10, 7777, 3)
    ranges: list[tuple[str, int, int]] = []
    real = s3_module.S3Mirror._range

    def spy(self: Any, rel: str, key: str, first: int, last: int, sink: Any) -> bytes:
        ranges.append((rel, first, last))
        return real(self, rel, key, first, last, sink)

    monkeypatch.setattr(s3_module.S3Mirror, "_range", spy)
    root = tmp_path / "root"
    dp_models.pull(["spacy_en_core_web_sm"], root=root, mirrors=[store], catalog=catalog_of(site))
    tokenizer = "text/spacy/en_core_web_sm-3.8.0/tokenizer"
    assert (root / tokenizer).read_bytes() == (site / tokenizer).read_bytes()
    size = (site / tokenizer).stat().st_size  # 77,066 bytes: 10 ranges of 7,777
    assert sorted((f, t) for r, f, t in ranges if r == tokenizer) == [
        (o, min(o + 7777, size) - 1) for o in range(0, size, 7777)
    ]
    # only files of at least 10 KiB come in ranges; the others in one GET
    big = {f for f in files_under(site) if (site / f).stat().st_size >= 10 << 10}
    assert {r for r, _, _ in ranges} == {f for f in big if f.startswith("text/spacy")}
    config.write_text(profile_s3(multipart_chunksize="lots"))
    with pytest.raises(ConfigurationError, match="multipart_chunksize must be a size"):
        s3_module.S3Mirror(store)


@pytest.mark.adversarial
@pytest.mark.parametrize("ranged", [False, True])
def test_connections_cut_mid_object_are_resumed(
    s3: Any,
    site: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ranged: bool,
) -> None:
    bucket = s3.bucket()
    store = f"s3://{bucket}/x"
    dp_models.push(["spacy_en_core_web_sm"], to=store, root=site, catalog=catalog_of(site))
    if ranged:
        Path(os.environ["AWS_CONFIG_FILE"]).write_text(
            profile_s3(multipart_threshold="10000", multipart_chunksize="30000")
        )
    monkeypatch.setattr(s3_module, "_BACKOFF_S", 0.0)
    with FaultProxy(s3.url.removeprefix("http://")) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
        proxy.cut_after(20_000, graceful=True)  # every answer ends after 20 kB: 4+ GETs
        root = tmp_path / "root"
        dp_models.pull(
            ["spacy_en_core_web_sm"], root=root, mirrors=[store], catalog=catalog_of(site)
        )
    tokenizer = "text/spacy/en_core_web_sm-3.8.0/tokenizer"
    assert (root / tokenizer).read_bytes() == (site / tokenizer).read_bytes()


# -- a store that is not there; credentials -------------------------------------------------------


@pytest.mark.adversarial
def test_a_missing_bucket_is_a_typed_error_that_never_shows_the_secret(
    s3: Any, site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = "s3://no-such-bucket-dp-models/x"
    with pytest.raises(DestinationUnavailableError, match="NoSuchBucket") as caught:
        dp_models.push([SMALL], to=store, root=site, catalog=catalog_of(site))
    assert caught.value.destination == store
    assert SECRET_KEY not in str(caught.value) and SECRET_KEY not in repr(caught.value)
    code = run_cli(
        ["push", SMALL, "--root", str(site), "--to", store, "--catalog", str(catalog_of(site))]
    )
    assert code != 0
    captured = capsys.readouterr()
    assert "NoSuchBucket" in captured.err and SECRET_KEY not in captured.err + captured.out
    assert SECRET_KEY not in repr(s3_module.S3Mirror(store)) + repr(s3_module.S3Destination(store))


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("s3://", "bucket name"),
        ("s3:///prefix", "bucket name"),
        ("s3://key:secret@bucket/p", "AWS settings"),
        ("s3://host:9000/bucket", "AWS settings"),
        ("s3://bucket/a/../b", "plain path segments"),
        ("s3://bucket/a//b", "plain path segments"),
        ("s3://bucket/a?x=1", "plain path segments"),
        ("http://bucket/a", "not an s3:// URL"),
    ],
)
def test_bad_s3_urls_say_what_is_expected(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        parse_s3_url(url)


def test_s3_urls_split_into_bucket_and_prefix() -> None:
    loc = parse_s3_url("s3://models/site/v1/")
    assert (loc.bucket, loc.prefix, loc.shown) == ("models", "site/v1", "s3://models/site/v1")
    assert loc.key("a/b.pt") == "site/v1/a/b.pt"
    assert parse_s3_url("S3://models").key("a") == "a"


def test_push_needs_a_store_it_knows(site: Path) -> None:
    with pytest.raises(ConfigurationError, match="s3://BUCKET/PREFIX"):
        dp_models.push([SMALL], to=str(site), root=site, catalog=catalog_of(site))


def test_a_dry_run_from_a_store_lists_each_file_and_fetches_nothing(
    s3: Any, site: Path, tmp_path: Path
) -> None:
    bucket = s3.bucket()
    store = f"s3://{bucket}/d"
    dp_models.push([SMALL, "spacy_en_core_web_sm"], to=store, root=site, catalog=catalog_of(site))
    root = tmp_path / "root"
    report = dp_models.pull(
        [SMALL, "spacy_en_core_web_sm"],
        root=root,
        mirrors=[store],
        catalog=catalog_of(site),
        dry_run=True,
    )
    assert {a.status for a in report.artifacts} == {"planned"}
    listed = {f.path: (f.size, f.source) for a in report.artifacts for f in a.files}
    wanted = [p for p in files_under(site) if p == SMALL_PATH or p.startswith("text/spacy/")]
    assert listed == {p: ((site / p).stat().st_size, store) for p in wanted}
    assert files_under(root) == []


# -- found in review ---------------------------------------------------------------------------


@pytest.mark.adversarial
def test_object_keys_that_would_leave_the_root_are_never_used(
    s3: Any, site: Path, tmp_path: Path
) -> None:
    """No manifest in the store nor in the site lock: the directory is listed from the
    object keys, and a key with '..' in it would land outside the root."""
    spacy = "text/spacy/en_core_web_sm-3.8.0"
    catalog = shutil.copytree(catalog_of(site), tmp_path / "catalog")
    raw = json.loads((catalog / "catalog.lock.json").read_text())
    raw["artifacts"][spacy].pop("files")
    (catalog / "catalog.lock.json").write_text(json.dumps(raw))
    bucket = s3.bucket()
    store = f"s3://{bucket}/m"
    dp_models.push(["spacy_en_core_web_sm"], to=store, root=site, catalog=catalog)
    client = s3.client()
    client.delete_object(Bucket=bucket, Key="m/catalog.lock.json")
    client.put_object(Bucket=bucket, Key=f"m/{spacy}/../../../../../ESCAPED.txt", Body=b"x")
    root = tmp_path / "deep" / "a" / "b" / "node"
    with pytest.raises(SourceUnavailableError, match="not a safe relative path"):
        dp_models.pull(["spacy_en_core_web_sm"], root=root, mirrors=[store], catalog=catalog)
    assert not [p for p in tmp_path.rglob("ESCAPED.txt")]
    assert files_under(root) == []


def test_a_spec_pin_without_a_size_is_pushed_with_the_file_s_size(
    s3: Any, site: Path, tmp_path: Path
) -> None:
    import yaml

    catalog = shutil.copytree(catalog_of(site), tmp_path / "catalog")
    lock = Lock.read(catalog / "catalog.lock.json")
    pinned = lock.artifacts[SMALL_PATH]
    spec_file = next(catalog.rglob("emonet_8.yaml"))
    data = yaml.safe_load(spec_file.read_text())
    data["artifacts"][0]["sha256"] = pinned.sha256  # a digest, no size
    spec_file.write_text(yaml.safe_dump(data, sort_keys=False))
    rest = {k: v for k, v in lock.artifacts.items() if k != SMALL_PATH}
    Lock(catalog / "catalog.lock.json", rest).write()
    bucket = s3.bucket()
    store = f"s3://{bucket}/p"
    dp_models.push([SMALL], to=store, root=site, catalog=catalog)
    manifest = s3_module.S3Mirror(store).manifest()
    assert manifest is not None and manifest.artifacts[SMALL_PATH].size == pinned.size > 0
    report = dp_models.pull([SMALL], root=tmp_path / "root", mirrors=[store], catalog=catalog)
    assert report.artifacts[0].status == "fetched"


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("variable", "value"),
    [("AWS_PROFILE", "no-such-profile"), ("AWS_ENDPOINT_URL_S3", "not a url")],
)
def test_aws_settings_that_make_no_client_are_a_configuration_error(
    s3: Any, site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match="AWS settings do not make an S3 client"):
        dp_models.pull(
            [SMALL], root=tmp_path / "root", mirrors=["s3://b/p"], catalog=catalog_of(site)
        )
    catalog = str(catalog_of(site))
    assert run_cli(["push", SMALL, "--root", str(site), "--catalog", catalog, "--to", "s3://b/p"])


@pytest.mark.adversarial
def test_a_large_file_changed_mid_push_is_never_completed(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The multipart gate push builds itself (default policy: the file's identity as the
    digest cache verified it): the file is rewritten after its first part went up."""
    root = tmp_path / "root"
    big = root / "bench/big.bin"
    big.parent.mkdir(parents=True)
    big.write_bytes(os.urandom(11 << 20))
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "big.yaml").write_text(
        'name: big\nversion: "1"\nfamily: test\nrole: test\nusers: [Test/push]\n'
        "runtime: inprocess\nengine: torch\nloader: torch_state_dict\n"
        'loader_args: {class_path: "torch.nn:Identity"}\n'
        f"artifacts:\n  - {{path: bench/big.bin, format: pt, sha256: {digest}}}\n"
    )
    Path(os.environ["AWS_CONFIG_FILE"]).write_text(profile_s3(multipart_chunksize="5MB"))
    real = s3_module.S3Destination._part

    def rewrite_after_the_first(self: Any, *args: Any) -> Any:
        sent = real(self, *args)
        if args[3] == 1:
            time.sleep(0.01)  # a later ctime, whatever the clock's granularity
            big.write_bytes(os.urandom(11 << 20))
        return sent

    monkeypatch.setattr(s3_module.S3Destination, "_part", rewrite_after_the_first)
    bucket = s3.bucket()
    with pytest.raises(PushedFileMismatchError, match="it changed") as caught:
        dp_models.push(["big"], to=f"s3://{bucket}/x", root=root, catalog=catalog)
    assert caught.value.actual == "(changed)"
    assert keys(s3, bucket) == []
    assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
