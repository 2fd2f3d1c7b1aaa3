"""OCI registries as push destinations and pull mirrors (dp_models._oci), against a real
registry: Debian's docker-registry (CNCF distribution) on loopback, started here
(tests/registry.py; scripts/registry_env.sh installs it). Nothing here mocks HTTP: a
fake root is pushed, pulled back with dp_models.pull, its digests compared; manifests the
push never writes are written by hand to see them refused."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dp_models
from dp_models import (
    ConfigurationError,
    LockError,
    OciManifestError,
    PulledFileMismatchError,
    SourceUnavailableError,
)
from dp_models import _oci as oci
from dp_models._digest import directory_digest
from dp_models._lock import Lock, LockEntry, ManifestFile
from dp_models._oci import OciDestination, OciMirror, parse_reference
from dp_models._settings import Settings
from dp_models._transfer import Sink, _NotThereError, _PutMismatchError
from dp_models.testing import fake_catalog_dir, fake_models_root, run_cli

from .fakeroots import spacy_dir_catalog
from .registry import Registry, StorageServer, TokenService

#: A file artifact and a directory artifact (a spaCy pipeline: many files, nested; given a
#: directory under the root, as the packaged spec names an installed distribution).
NAMES = ["emonet_8", "spacy_en_core_web_sm"]
FILE = "visual/emonet/emonet_8.pth"
DIRECTORY = "text/spacy/en_core_web_sm-3.8.0"
USER, PASSWORD = "pusher", "s3cr3t-Pa55word"
ANNOTATION_PATH = "org.cncf.model.filepath"


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Docker config directory: the caller's ~/.docker is never read."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    return directory


def login(config: Path, registry: str, user: str, password: str) -> None:
    """What ``docker login`` writes: a base64 ``auth`` for the registry."""
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {registry: {"auth": auth}}}))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    server = Registry(tmp_path_factory.mktemp("registry")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("served")
    return fake_models_root(
        base / "root",
        NAMES,
        catalog=spacy_dir_catalog(base / "catalog"),
        substitute=["emonet_8"],  # its class is the processor's, not installed here
    )


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository of its own for each test (blobs are linked per repository)."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    return f"models/{name[:80].strip('-')}"


def pinned(root: Path, paths: list[str]) -> Lock:
    """The lock of the artifacts at ``paths`` under ``root``, hashed here (not by dp_models):
    a file's sha256 and size, a directory's manifest and directory digest."""
    entries: dict[str, LockEntry] = {}
    for path in paths:
        full = root / path
        if full.is_file():
            data = full.read_bytes()
            entries[path] = LockEntry("file", hashlib.sha256(data).hexdigest(), len(data))
            continue
        files = {
            p.relative_to(full).as_posix(): ManifestFile(
                hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size
            )
            for p in sorted(full.rglob("*"))
            if p.is_file()
        }
        digest = directory_digest([(rel, f.sha256) for rel, f in files.items()])
        entries[path] = LockEntry("dir", digest, sum(f.size for f in files.values()), files)
    return Lock(root / "pushed.lock.json", entries, exists=True)


def files_of(lock: Lock) -> dict[str, tuple[str, int]]:
    found: dict[str, tuple[str, int]] = {}
    for path, entry in lock.artifacts.items():
        if entry.files is None:
            found[path] = (entry.sha256, entry.size)
        else:
            for rel, f in entry.files.items():
                found[f"{path}/{rel}"] = (f.sha256, f.size)
    return found


def push(root: Path, lock: Lock, dest: OciDestination) -> tuple[str, list[str]]:
    """What ``dp-models push`` does with a destination: each file not there yet is put,
    then the lock is committed. The reference returned and the files uploaded."""
    uploaded = []
    for rel, (sha256, size) in sorted(files_of(lock).items()):
        if dest.has(rel, size, sha256):
            continue
        fd = os.open(root / rel, os.O_RDONLY)
        try:
            dest.put(rel, fd, size, sha256, lambda n: None)
        finally:
            os.close(fd)
        uploaded.append(rel)
    reference = dest.commit(lock.dumps().encode())
    dest.close()
    return reference, uploaded


def fetch(mirror: OciMirror, rel: str, tmp_path: Path, size: int | None = None) -> Sink:
    with open(tmp_path / "fetched.part", "w+b") as f:
        sink = Sink(f, size, threading.Event(), lambda n: None)
        mirror.fetch(rel, sink)
        return sink


def pull_into(
    root: Path, served: Path, lock: Lock, mirror: OciMirror, names: list[str] = NAMES
) -> Any:
    lock_path = root.parent / "site.lock.json"
    lock_path.write_text(lock.dumps())
    return dp_models.pull(
        names,
        root=root,
        mirrors=[mirror],
        catalog=fake_catalog_dir(served),
        lock=lock_path,
        progress=False,
    )


# -- references, credentials, the plain-http rule (no registry) -------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("oci://127.0.0.1:5000/models/site:v1", ("127.0.0.1", 5000, "models/site", "v1", None)),
        (
            "OCI://Registry.Example.com/a/b/c:2026.05",
            ("registry.example.com", None, "a/b/c", "2026.05", None),
        ),
        (f"oci://[::1]:5000/m@sha256:{'a' * 64}", ("::1", 5000, "m", None, f"sha256:{'a' * 64}")),
        (f"oci://h/m:t@sha256:{'b' * 64}", ("h", None, "m", "t", f"sha256:{'b' * 64}")),
        (
            "oci://localhost:5000/a.b/c_d/e__f/g-h",
            ("localhost", 5000, "a.b/c_d/e__f/g-h", None, None),
        ),
    ],
)
def test_references_parse(value: str, expected: tuple[Any, ...]) -> None:
    ref = parse_reference(value)
    assert (ref.host, ref.port, ref.repository, ref.tag, ref.digest) == expected
    assert parse_reference(str(ref)) == ref


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("https://registry/models:v1", "does not start with oci://"),
        ("oci://registry", "names no repository"),
        ("oci://registry/Models:v1", "repository names are lowercase"),
        ("oci://registry/models/../etc:v1", "is not a repository name"),
        ("oci://registry/models:-v1", "is not a tag"),
        ("oci://registry/models@sha256:abc", "64 lowercase hex"),
        ("oci://registry/models@md5:" + "a" * 32, "must be sha256"),
        ("oci://registry/models:v1?x=1", "no query"),
        ("oci://reg istry/models:v1", "whitespace"),
        ("oci://registry:99999/models:v1", "not a registry host"),
        ("oci://bob:hunter2@registry/models:v1", "docker login"),
    ],
)
def test_bad_references_are_configuration_errors(value: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(words)) as info:
        parse_reference(value)
    assert "hunter2" not in str(info.value)
    assert "oci://REGISTRY" in str(info.value)  # what was expected


def test_push_needs_a_tag_and_pull_a_tag_or_digest() -> None:
    with pytest.raises(ConfigurationError, match="push names a tag"):
        OciDestination(f"oci://127.0.0.1:1/models@sha256:{'a' * 64}")
    with pytest.raises(ConfigurationError, match="push names a tag"):
        OciDestination("oci://127.0.0.1:1/models")
    with pytest.raises(ConfigurationError, match="name a tag or a digest"):
        OciMirror("oci://127.0.0.1:1/models")


def test_plain_http_only_for_loopback_or_listed_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    for host in ("127.0.0.1", "127.8.9.10", "::1", "localhost"):
        assert oci.plain_http_allowed(host, 5000)
    assert not oci.plain_http_allowed("registry.example.com", 5000)
    assert not oci.plain_http_allowed("10.0.0.5", None)
    monkeypatch.setenv("DP_MODELS_OCI_PLAIN_HTTP", "registry.lab:5000, 10.0.0.5")
    listed = Settings.resolve().oci_plain_http
    assert listed == ("registry.lab:5000", "10.0.0.5")
    assert oci.plain_http_allowed("registry.lab", 5000, listed)
    assert not oci.plain_http_allowed("registry.lab", 443, listed)
    assert oci.plain_http_allowed("10.0.0.5", None, listed)
    ref = parse_reference("oci://registry.example.com/models:v1")
    assert OciDestination(ref)._registry.scheme == "https"
    assert OciDestination("oci://registry.lab:5000/models:v1")._registry.scheme == "http"


def test_credentials_come_from_the_docker_config(docker_config: Path) -> None:
    config = Settings.resolve().docker_config
    assert config == docker_config / "config.json"
    assert oci.docker_credentials("registry:5000", config) is None  # no config.json at all
    login(docker_config, "https://registry:5000/v1/", USER, PASSWORD)
    found = oci.docker_credentials("registry:5000", docker_config / "config.json")
    assert found is not None
    assert found.basic() == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert PASSWORD not in repr(found) and USER not in repr(found)
    assert (
        oci.docker_credentials("registry", docker_config / "config.json") is None
    )  # another port: another registry
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {"other": {"username": "u", "password": "p"}}})
    )
    assert oci.docker_credentials("other", docker_config / "config.json") is not None


@pytest.mark.adversarial
def test_a_broken_docker_config_is_named_not_shown(docker_config: Path) -> None:
    (docker_config / "config.json").write_text('{"auths": {"r": {"auth": "' + PASSWORD)
    with pytest.raises(ConfigurationError, match="not valid JSON") as info:
        oci.docker_credentials("r", docker_config / "config.json")
    assert PASSWORD not in str(info.value)
    (docker_config / "config.json").write_text(json.dumps({"auths": {"r": {"auth": "%%%"}}}))
    with pytest.raises(ConfigurationError, match="not base64"):
        oci.docker_credentials("r", docker_config / "config.json")


# -- push, then pull back ------------------------------------------------------------------------


def test_push_then_pull_the_root_back(
    registry: Registry, served: Path, repo: str, tmp_path: Path
) -> None:
    lock = pinned(served, [FILE, DIRECTORY])
    dest = OciDestination(f"{registry.url}/{repo}:v1")
    reference, uploaded = push(served, lock, dest)
    # each blob once: a file with the bytes of one already uploaded is skipped (has())
    digests = {sha256 for sha256, _ in files_of(lock).values()}
    assert {files_of(lock)[rel][0] for rel in uploaded} == digests
    assert len(uploaded) == len(digests) < len(files_of(lock))
    digest = reference.split("@", 1)[1]
    assert reference == f"{registry.url}/{repo}@{digest}"
    # the tag resolves to the digest the push returned, and the mirror goes by it
    mirror = OciMirror(f"{registry.url}/{repo}:v1")
    assert mirror.digest == digest
    assert mirror.shown == mirror.where(FILE) == reference
    assert str(mirror.requested) == f"{registry.url}/{repo}:v1"
    # the mirror lists the directory and gives each file's size and digest
    listing = mirror.list(DIRECTORY)
    assert listing is not None
    assert {rel: (e.published, e.size) for rel, e in listing.items()} == {
        rel: (f.sha256, f.size) for rel, f in (lock.artifacts[DIRECTORY].files or {}).items()
    }
    assert mirror.probe(FILE) == lock.artifacts[FILE].size
    assert mirror.probe("not/there") is None and mirror.list(FILE) is None
    pushed = mirror.manifest()
    assert pushed is not None and pushed.artifacts == lock.artifacts
    assert mirror.entry(DIRECTORY) == lock.artifacts[DIRECTORY]
    # pulled into an empty root by dp_models.pull: every file the same bytes
    root = tmp_path / "root"
    report = pull_into(root, served, lock, mirror)
    assert {a.status for a in report.artifacts} == {"fetched"}
    assert report.mirrors == [reference]
    assert {f.source for a in report.artifacts for f in a.files} == {reference}
    for rel, (sha256, size) in files_of(lock).items():
        data = (root / rel).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (sha256, size)
    # again: nothing is fetched
    again = pull_into(root, served, lock, OciMirror(reference))
    assert {a.status for a in again.artifacts} == {"present"}


def test_the_artifact_follows_modelpack(registry: Registry, served: Path, repo: str) -> None:
    lock = pinned(served, [FILE, DIRECTORY])
    reference, _ = push(served, lock, OciDestination(f"{registry.url}/{repo}:v1"))
    digest = reference.split("@", 1)[1]
    status, _, raw = registry.request(
        "GET", f"/v2/{repo}/manifests/{digest}", headers={"Accept": oci.MANIFEST_MEDIA_TYPE}
    )
    assert status == 200 and "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    manifest = json.loads(raw)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json"
    *layers, last = manifest["layers"]
    assert last["mediaType"] == "application/vnd.dp-models.lock.v1+json"
    assert last["annotations"]["org.opencontainers.image.title"] == "catalog.lock.json"
    expected = files_of(lock)
    assert [layer["annotations"][ANNOTATION_PATH] for layer in layers] == sorted(expected)
    for layer in layers:
        path = layer["annotations"][ANNOTATION_PATH]
        assert layer["annotations"]["org.opencontainers.image.title"] == path
        # a raw layer: its digest is the file's sha256
        assert (layer["digest"], layer["size"]) == (
            f"sha256:{expected[path][0]}",
            expected[path][1],
        )
        assert layer["mediaType"].startswith("application/vnd.cncf.model.")
        assert layer["mediaType"].endswith(".v1.raw")
        assert (
            json.loads(layer["annotations"]["org.cncf.model.file.metadata+json"])["size"]
            == (expected[path][1])
        )
    by_path = {layer["annotations"][ANNOTATION_PATH]: layer["mediaType"] for layer in layers}
    assert by_path[FILE] == "application/vnd.cncf.model.weight.v1.raw"
    assert by_path[f"{DIRECTORY}/meta.json"] == "application/vnd.cncf.model.weight.config.v1.raw"
    status, _, config = registry.request("GET", f"/v2/{repo}/blobs/{manifest['config']['digest']}")
    assert status == 200
    assert json.loads(config)["modelfs"] == {
        "type": "layers",
        "diffIds": [layer["digest"] for layer in manifest["layers"]],
    }
    # the same files pushed again make the same artifact: the same digest
    again, _ = push(served, lock, OciDestination(f"{registry.url}/{repo}:v2"))
    assert again == reference


def test_pull_by_digest_keeps_what_the_tag_no_longer_names(
    registry: Registry, tmp_path: Path, repo: str
) -> None:
    root = tmp_path / "root"
    (root / "m").mkdir(parents=True)
    (root / "m" / "w.bin").write_bytes(b"version one")
    first, _ = push(root, pinned(root, ["m/w.bin"]), OciDestination(f"{registry.url}/{repo}:v1"))
    (root / "m" / "w.bin").write_bytes(b"version two, longer")
    second, _ = push(root, pinned(root, ["m/w.bin"]), OciDestination(f"{registry.url}/{repo}:v1"))
    assert first != second
    assert OciMirror(f"{registry.url}/{repo}:v1").shown == second
    old = OciMirror(first)
    assert old.shown == first and old.probe("m/w.bin") == len(b"version one")
    assert (
        fetch(old, "m/w.bin", tmp_path).hash.hexdigest()
        == hashlib.sha256(b"version one").hexdigest()
    )
    with pytest.raises(_NotThereError):
        fetch(old, "m/other.bin", tmp_path)


def test_has_skips_blobs_the_repository_holds(registry: Registry, served: Path, repo: str) -> None:
    lock = pinned(served, [FILE, DIRECTORY])
    dest = OciDestination(f"{registry.url}/{repo}:v1")
    for rel, (sha256, size) in files_of(lock).items():
        assert not dest.has(rel, size, sha256)
    _, uploaded = push(served, lock, dest)
    assert uploaded
    _, uploaded = push(served, lock, OciDestination(f"{registry.url}/{repo}:v2"))
    assert uploaded == []
    # blobs belong to a repository: another one does not have them (until pushed there)
    other = OciDestination(f"{registry.url}/{repo}-other:v1")
    sha256, size = files_of(lock)[FILE]
    assert not other.has(FILE, size, sha256)


def test_a_missing_tag_is_a_clear_error(registry: Registry, repo: str) -> None:
    with pytest.raises(SourceUnavailableError, match="no such manifest") as info:
        OciMirror(f"{registry.url}/{repo}:never-pushed")
    assert "dp-models push" in str(info.value)


# -- what must be refused --------------------------------------------------------------------------


@pytest.mark.adversarial
def test_a_file_that_is_not_its_pin_is_refused_and_the_tag_stays(
    registry: Registry, tmp_path: Path, repo: str
) -> None:
    root = tmp_path / "root"
    (root / "m").mkdir(parents=True)
    good = os.urandom(4096)
    (root / "m" / "w.bin").write_bytes(good)
    first, _ = push(root, pinned(root, ["m/w.bin"]), OciDestination(f"{registry.url}/{repo}:v1"))
    # the file changed after it was pinned: same size, other bytes
    changed = b"X" + good[1:]
    (root / "m" / "w.bin").write_bytes(changed)
    wanted = hashlib.sha256(b"the pinned bytes, never stored").hexdigest()
    dest = OciDestination(f"{registry.url}/{repo}:v1")
    fd = os.open(root / "m" / "w.bin", os.O_RDONLY)
    try:
        with pytest.raises(_PutMismatchError) as info:
            dest.put("m/w.bin", fd, len(changed), wanted, lambda n: None)
        assert (info.value.actual, info.value.size) == (
            hashlib.sha256(changed).hexdigest(),
            len(changed),
        )
        # a file shorter than its pinned size: never a whole body
        with pytest.raises(_PutMismatchError) as info:
            dest.put("m/w.bin", fd, len(changed) + 10, wanted, lambda n: None)
        assert info.value.size == len(changed)
    finally:
        os.close(fd)
    assert not dest.has("m/w.bin", len(changed), wanted)
    assert not dest.has("m/w.bin", len(changed), hashlib.sha256(changed).hexdigest())
    # no commit happened: the tag still names the first push
    assert OciMirror(f"{registry.url}/{repo}:v1").shown == first


@pytest.mark.adversarial
def test_a_lock_without_a_directory_manifest_is_not_committed(
    registry: Registry, repo: str
) -> None:
    lock = Lock(Path("x"), {"d": LockEntry("dir", "a" * 64, 3)}, exists=True)
    with pytest.raises(LockError, match="no manifest for the directory d"):
        OciDestination(f"{registry.url}/{repo}:v1").commit(lock.dumps().encode())
    with pytest.raises(LockError, match="not valid"):
        OciDestination(f"{registry.url}/{repo}:v1").commit(b"{}")


@pytest.mark.adversarial
def test_a_commit_listing_a_blob_never_put_is_refused(registry: Registry, repo: str) -> None:
    lock = Lock(Path("x"), {"m/w.bin": LockEntry("file", "c" * 64, 3)}, exists=True)
    with pytest.raises(SourceUnavailableError, match="BLOB_UNKNOWN"):
        OciDestination(f"{registry.url}/{repo}:v1").commit(lock.dumps().encode())
    with pytest.raises(SourceUnavailableError, match="no such manifest"):
        OciMirror(f"{registry.url}/{repo}:v1")


@pytest.mark.adversarial
def test_a_tampered_blob_is_a_mismatch(registry: Registry, tmp_path: Path, repo: str) -> None:
    root = tmp_path / "root"
    (root / "m").mkdir(parents=True)
    data = os.urandom(100_000)  # bytes no other test shares a blob with
    (root / "m" / "w.bin").write_bytes(data)
    reference, _ = push(
        root, pinned(root, ["m/w.bin"]), OciDestination(f"{registry.url}/{repo}:v1")
    )
    sha256 = hashlib.sha256(data).hexdigest()
    registry.blob_file(sha256).write_bytes(bytes([data[0] ^ 1]) + data[1:])
    mirror = OciMirror(reference)
    with pytest.raises(PulledFileMismatchError, match="other bytes than its digest") as info:
        fetch(mirror, "m/w.bin", tmp_path, len(data))
    assert info.value.expected == sha256 and info.value.source == reference
    # a pin of another size is refused before a byte is read
    with pytest.raises(PulledFileMismatchError, match="the pin 5"):
        fetch(mirror, "m/w.bin", tmp_path, 5)


@pytest.mark.adversarial
def test_a_tampered_manifest_is_refused_by_digest_and_by_tag(
    registry: Registry, tmp_path: Path, repo: str
) -> None:
    root = tmp_path / "root"
    (root / "m").mkdir(parents=True)
    (root / "m" / "w.bin").write_bytes(os.urandom(1000))
    reference, _ = push(
        root, pinned(root, ["m/w.bin"]), OciDestination(f"{registry.url}/{repo}:v1")
    )
    digest = reference.split("@", 1)[1]
    stored = registry.blob_file(digest)
    manifest = json.loads(stored.read_bytes())
    manifest["annotations"] = {"tampered": "yes"}  # still a manifest, other bytes
    stored.write_bytes(json.dumps(manifest).encode())
    with pytest.raises(OciManifestError, match="were fetched by") as info:
        OciMirror(reference)
    assert info.value.reference == reference
    with pytest.raises(OciManifestError, match="the registry announces"):
        OciMirror(f"{registry.url}/{repo}:v1")


def hand_written(registry: Registry, repo: str, layers: list[dict[str, Any]]) -> str:
    """PUT a manifest with these layers (their blobs uploaded first); its digest ref."""
    config = registry.put_blob(repo, b"{}")
    for layer in layers:
        registry.put_blob(repo, layer.pop("data"))
    manifest = {
        "schemaVersion": 2,
        "mediaType": oci.MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": oci.CONFIG_MEDIA_TYPE, "digest": config, "size": 2},
        "layers": layers,
    }
    digest = registry.put_manifest(repo, "hand", manifest, oci.MANIFEST_MEDIA_TYPE)
    return f"{registry.url}/{repo}@{digest}"


def layer(path: str, data: bytes, key: str = ANNOTATION_PATH, **extra: Any) -> dict[str, Any]:
    return {
        "mediaType": oci.WEIGHT_RAW,
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "annotations": {key: path},
        "data": data,
        **extra,
    }


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("paths", "words"),
    [
        (["../../etc/passwd"], "must not contain '..'"),
        (["/etc/passwd"], "not absolute"),
        (["models\\..\\evil"], "'/' separators"),
        (["a/./b"], "normalised"),
        (["a/b", "a/b"], "twice"),
        (["a", "a/b"], "as a file and as a directory"),
    ],
)
def test_manifest_paths_that_leave_the_root_are_refused(
    registry: Registry, repo: str, paths: list[str], words: str
) -> None:
    layers = [layer(p, f"bytes {i}".encode()) for i, p in enumerate(paths)]
    reference = hand_written(registry, repo, layers)
    with pytest.raises(OciManifestError, match=re.escape(words)) as info:
        OciMirror(reference)
    assert info.value.reference == reference


@pytest.mark.adversarial
def test_an_unsafe_title_is_refused_too(registry: Registry, repo: str) -> None:
    reference = hand_written(
        registry, repo, [layer("../evil", b"x", key="org.opencontainers.image.title")]
    )
    with pytest.raises(OciManifestError, match=r"\.\.") as info:
        OciMirror(reference)
    assert info.value.path == "../evil"


@pytest.mark.adversarial
def test_a_layer_of_other_bytes_than_the_pin_is_never_placed(
    registry: Registry, served: Path, repo: str, tmp_path: Path
) -> None:
    lock = pinned(served, [FILE])
    size = lock.artifacts[FILE].size
    evil = b"E" * size  # the right size, other bytes, a correct layer digest for them
    reference = hand_written(registry, repo, [layer(FILE, evil)])
    root = tmp_path / "root"
    with pytest.raises(PulledFileMismatchError) as info:
        pull_into(root, served, lock, OciMirror(reference), ["emonet_8"])
    assert info.value.expected == lock.artifacts[FILE].sha256
    assert info.value.actual == hashlib.sha256(evil).hexdigest()
    assert not (root / FILE).exists()


@pytest.mark.adversarial
def test_an_index_and_a_packed_layer_are_refused(
    registry: Registry, repo: str, tmp_path: Path
) -> None:
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [],
    }
    digest = registry.put_manifest(repo, "index", index, "application/vnd.oci.image.index.v1+json")
    with pytest.raises(OciManifestError, match="image index"):
        OciMirror(f"{registry.url}/{repo}@{digest}")
    packed = layer("m/w.bin", b"a tar, say", mediaType="application/vnd.cncf.model.weight.v1.tar")
    mirror = OciMirror(hand_written(registry, repo, [packed]))
    assert mirror.probe("m/w.bin") is None
    with pytest.raises(SourceUnavailableError, match="one file per raw layer"):
        fetch(mirror, "m/w.bin", tmp_path)


# -- authentication ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def storage_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, StorageServer]]:
    directory = tmp_path_factory.mktemp("secured")
    server = StorageServer(directory / "storage")
    yield directory, server
    server.close()


@pytest.fixture(scope="module")
def secured(storage_server: tuple[Path, StorageServer]) -> Iterator[Registry]:
    """A registry that wants a password (htpasswd: Basic) and redirects blob downloads
    to another origin (the storage server), as registries backed by object stores do."""
    directory, storage = storage_server
    server = Registry(directory, htpasswd=(USER, PASSWORD), redirect_to=storage.url).start()
    yield server
    server.stop()


def secret_free(*texts: str) -> None:
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for text in texts:
        assert PASSWORD not in text and basic not in text


@pytest.mark.adversarial
def test_a_registry_that_wants_a_password_says_how_to_log_in(secured: Registry, repo: str) -> None:
    dest = OciDestination(f"{secured.url}/{repo}:v1")
    with pytest.raises(SourceUnavailableError, match=r"docker login 127\.0\.0\.1:") as info:
        dest.has("x", 1, "a" * 64)
    assert "needs credentials" in str(info.value)
    with pytest.raises(SourceUnavailableError, match="needs credentials"):
        OciMirror(f"{secured.url}/{repo}:v1")


def test_basic_credentials_are_sent_to_the_registry_only(
    secured: Registry,
    storage_server: tuple[Path, StorageServer],
    served: Path,
    repo: str,
    tmp_path: Path,
    docker_config: Path,
) -> None:
    login(docker_config, f"127.0.0.1:{secured.port}", USER, PASSWORD)
    lock = pinned(served, [FILE, DIRECTORY])
    dest = OciDestination(f"{secured.url}/{repo}:v1")
    reference, _ = push(served, lock, dest)
    mirror = OciMirror(f"{secured.url}/{repo}:v1")
    assert mirror.shown == reference
    storage = storage_server[1]
    storage.headers.clear()
    report = pull_into(tmp_path / "root", served, lock, mirror)
    assert {a.status for a in report.artifacts} == {"fetched"}
    # every blob came from the storage origin, which never saw the credentials
    assert len(storage.headers) == len(files_of(lock))
    assert all("Authorization" not in h for h in storage.headers)
    secret_free(repr(dest), repr(mirror), repr(dest._registry), repr(mirror._registry))
    secret_free(repr(dest.__dict__), repr(mirror.__dict__))


@pytest.mark.adversarial
def test_refused_credentials_are_never_shown(
    secured: Registry, repo: str, docker_config: Path
) -> None:
    login(docker_config, f"127.0.0.1:{secured.port}", USER, "not-" + PASSWORD)
    with pytest.raises(SourceUnavailableError, match="refuses the credentials") as info:
        OciDestination(f"{secured.url}/{repo}:v1").has("x", 1, "a" * 64)
    message = str(info.value)
    assert str(docker_config / "config.json") in message
    assert "not-" + PASSWORD not in message
    assert base64.b64encode(f"{USER}:not-{PASSWORD}".encode()).decode() not in message


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Registry, TokenService]]:
    directory = tmp_path_factory.mktemp("token")
    service = TokenService(directory, USER, PASSWORD)
    server = Registry(directory, token=service).start()
    yield server, service
    server.stop()
    service.close()


def test_the_bearer_token_flow(
    token_registry: tuple[Registry, TokenService],
    served: Path,
    repo: str,
    tmp_path: Path,
    docker_config: Path,
) -> None:
    server, service = token_registry
    with pytest.raises(SourceUnavailableError, match="needs credentials"):
        OciMirror(f"{server.url}/{repo}:v1")  # anonymous: the token service says no
    login(docker_config, f"127.0.0.1:{server.port}", USER, PASSWORD)
    service.authorizations.clear()
    lock = pinned(served, [FILE, DIRECTORY])
    reference, _ = push(served, lock, OciDestination(f"{server.url}/{repo}:v1"))
    # the credentials went to the token service, once per session, not per request
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert service.authorizations == [basic]
    mirror = OciMirror(f"{server.url}/{repo}:v1")
    assert mirror.shown == reference
    report = pull_into(tmp_path / "root", served, lock, mirror)
    assert {a.status for a in report.artifacts} == {"fetched"}
    assert service.authorizations == [basic, basic]
    secret_free(repr(mirror), repr(mirror.__dict__))


# -- the command line, end to end ---------------------------------------------------------------


def test_dp_models_push_then_pull_by_the_printed_digest_then_doctor(
    registry: Registry, served: Path, repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = str(fake_catalog_dir(served))
    store = f"{registry.url}/{repo}:v1"
    argv = ["push", *NAMES, "--root", str(served), "--catalog", catalog, "--to", store, "--json"]
    assert run_cli(argv) == 0
    report = json.loads(capsys.readouterr().out)
    reference = report["reference"]
    assert reference.startswith(f"{registry.url}/{repo}@sha256:")
    assert {a["status"] for a in report["artifacts"]} == {"pushed"}
    # a second push of the same root sends nothing and names the same artifact
    assert run_cli(argv[:-1]) == 0
    out = capsys.readouterr().out
    assert "pushed 0 artifacts" in out and f"--from {reference}" in out
    root = tmp_path / "node"
    pull = ["pull", *NAMES, "--root", str(root), "--catalog", catalog, "--from", reference]
    assert run_cli(pull) == 0
    assert run_cli(["doctor", *NAMES, "--root", str(root), "--catalog", catalog]) == 0
    capsys.readouterr()
    # by tag: the report records the digest the tag named
    other = tmp_path / "other"
    by_tag = ["pull", *NAMES, "--root", str(other), "--catalog", catalog, "--from", store]
    assert run_cli([*by_tag, "--json"]) == 0
    pulled = json.loads(capsys.readouterr().out)
    assert pulled["mirrors"] == [reference]


@pytest.mark.adversarial
def test_a_registry_that_does_not_answer_is_one_unavailable_mirror(
    served: Path, tmp_path: Path
) -> None:
    """Found in review: the tag is resolved when the mirror is made, and a registry down
    then ended the pull, even where the next mirror had the files or nothing was needed."""
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        down = f"oci://127.0.0.1:{s.getsockname()[1]}/models/site:v1"
    catalog = fake_catalog_dir(served)
    root = tmp_path / "root"
    report = dp_models.pull(
        ["emonet_8"], root=root, mirrors=[down, str(served)], catalog=catalog, progress=False
    )
    assert [a.status for a in report.artifacts] == ["fetched"]
    assert report.artifacts[0].files[0].source == str(served)
    again = dp_models.pull(["emonet_8"], root=root, mirrors=[down], catalog=catalog)
    assert [a.status for a in again.artifacts] == ["present"]  # the registry is not needed
    with pytest.raises(SourceUnavailableError):
        dp_models.pull(["emonet_8"], root=tmp_path / "other", mirrors=[down], catalog=catalog)
