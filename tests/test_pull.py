"""dp-models pull: a fake root served from a real loopback HTTP server (range requests,
injected faults) or a directory, pulled into an empty root, every byte verified before it
is visible; then doctor is ok and every spec loads inside the network guard."""

from __future__ import annotations

import base64
import errno
import http.server
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

import dp_models
from dp_models import (
    Catalog,
    ConfigurationError,
    LockError,
    ModelManager,
    NotPullableError,
    PulledFileMismatchError,
    RedirectLoopError,
    SourceNotFoundError,
    SourceUnavailableError,
    network_guard,
)
from dp_models import _pull as pull_module
from dp_models import _transfer as transfer_module
from dp_models._lock import Lock
from dp_models._settings import ENV_MIRRORS, Settings
from dp_models._transfer import HttpMirror
from dp_models.testing import fake_catalog_dir, fake_models_root, packaged_catalog_dir, run_cli

from .fakeroots import spacy_dir_catalog

#: In-process specs of the packaged catalog, cheap to fake and load: two directory
#: artifacts (a spaCy pipeline, given a directory under the root: the packaged spec names
#: an installed distribution; all-MiniLM-L6-v2, which holds a pinned file), a spec that
#: ``requires`` another (yolo11n_detector -> bytetrack_tracker).
NAMES = [
    "shared_tokenizer_v1",
    "spacy_en_core_web_sm",
    "all_minilm_l6_v2",
    "emonet_8",
    "yolo11n_detector",
]
SMALL = "emonet_8"
SECRET = "s3cr3t-pw"


class MirrorServer:
    """A threaded HTTP server on 127.0.0.1 serving ``tree`` as a mirror: range requests,
    Basic authentication when ``auth`` is set, and per-path faults (``faults[path]``, or
    ``faults["*"]`` for every path): ``404``, ``500``, ``loop`` (redirects to itself),
    ``cut-once`` (the first answer stops halfway), ``short`` (every answer stops before
    its body), ``long`` (announces and sends extra bytes), ``long-unannounced`` (no
    Content-Length, extra bytes), ``wrong`` (other bytes of the right size), ``slow``, or
    a URL (redirects there)."""

    def __init__(self, tree: Path, *, auth: tuple[str, str] | None = None) -> None:
        self.tree = tree
        self.faults: dict[str, str] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.authorizations: list[str | None] = []
        self._lock = threading.Lock()
        expected = None
        if auth is not None:
            expected = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, *, body: bool) -> None:
                rel = unquote(urlsplit(self.path).path).lstrip("/")
                with server._lock:
                    server.requests.append((self.command, rel, self.headers.get("Range")))
                    server.authorizations.append(self.headers.get("Authorization"))
                    fault = server.faults.get(rel) or server.faults.get("*")
                    if fault == "cut-once" and self.command == "GET":
                        server.faults.pop(rel, None)
                        server.faults.pop("*", None)
                if expected is not None and self.headers.get("Authorization") != expected:
                    self.send_error(401)
                    return
                if fault in ("404", "500"):
                    self.send_error(int(fault))
                    return
                if fault is not None and fault.startswith("http://"):  # elsewhere
                    self.send_response(307)
                    self.send_header("Location", f"{fault}/{rel}")
                    self.end_headers()
                    return
                if fault == "loop":
                    self.send_response(302)
                    self.send_header("Location", self.path)
                    self.end_headers()
                    return
                path = server.tree / rel
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                if fault == "wrong":
                    data = bytes([data[0] ^ 1]) + data[1:]
                start, status = 0, 200
                ranged = self.headers.get("Range")
                if ranged and ranged.startswith("bytes=") and ranged.endswith("-"):
                    start, status = int(ranged[6:-1]), 206
                part = data[start:]
                if fault in ("long", "long-unannounced"):
                    part += b"trailing bytes"
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                if fault != "long-unannounced":
                    self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if not body:
                    return
                if fault == "slow":
                    time.sleep(0.3)
                if fault == "cut-once":
                    part = part[: len(part) // 2]
                if fault == "short":
                    part = b""
                self.wfile.write(part)
                self.wfile.flush()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def gets(self) -> list[str]:
        with self._lock:
            return [rel for method, rel, _ in self.requests if method == "GET"]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake root of NAMES with its catalog copy and lock (with directory manifests)."""
    base = tmp_path_factory.mktemp("mirror")
    return fake_models_root(
        base / "root",
        NAMES,
        catalog=spacy_dir_catalog(base / "catalog"),
        substitute=["emonet_8"],  # its class is the processor's, not installed here
    )


@pytest.fixture
def mirror(served: Path) -> Iterator[MirrorServer]:
    server = MirrorServer(served)
    yield server
    server.close()


def catalog_of(served: Path) -> Path:
    return fake_catalog_dir(served)


def visible(root: Path) -> list[str]:
    """Every file under ``root`` but the pull locks, relative."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and pull_module.LOCK_DIR not in p.parts
    )


def temporary(root: Path) -> list[Path]:
    """Hidden files and directories under ``root`` (temporary ones), but the pull locks."""
    return [p for p in root.rglob(".*") if pull_module.LOCK_DIR not in p.relative_to(root).parts]


def fast(url: str) -> HttpMirror:
    return HttpMirror(url, retries=1, backoff_s=0.01)


# -- the lock's directory manifests ------------------------------------------------------------


def test_the_lock_records_each_directory_manifest(served: Path, tmp_path: Path) -> None:
    catalog = shutil.copytree(catalog_of(served), tmp_path / "catalog")
    (catalog / "catalog.lock.json").unlink()
    assert run_cli(["lock", "--root", str(served), "--catalog", str(catalog)]) == 0
    lock = Lock.read(catalog / "catalog.lock.json")
    spacy = lock.artifacts["text/spacy/en_core_web_sm-3.8.0"]
    assert spacy.kind == "dir" and spacy.files
    assert "meta.json" in spacy.files or any(r.endswith("meta.json") for r in spacy.files)
    assert sum(f.size for f in spacy.files.values()) == spacy.size
    assert lock.artifacts["visual/emonet/emonet_8.pth"].files is None
    raw = json.loads((catalog / "catalog.lock.json").read_text())
    assert set(raw["artifacts"]["visual/emonet/emonet_8.pth"]) == {"kind", "sha256", "size"}


@pytest.mark.adversarial
def test_a_manifest_that_disagrees_with_its_digest_is_a_lock_error(
    served: Path, tmp_path: Path
) -> None:
    raw = json.loads((catalog_of(served) / "catalog.lock.json").read_text())
    entry = raw["artifacts"]["text/spacy/en_core_web_sm-3.8.0"]
    first = sorted(entry["files"])[0]
    path = tmp_path / "lock.json"
    for change, words in (
        ({"sha256": "0" * 64}, "directory digest"),
        ({"size": entry["files"][first]["size"] + 1}, "add up to"),
        ({"extra": 1}, "exactly 'sha256', 'size'"),
    ):
        bad = json.loads(json.dumps(raw))
        bad["artifacts"]["text/spacy/en_core_web_sm-3.8.0"]["files"][first].update(change)
        path.write_text(json.dumps(bad))
        with pytest.raises(LockError, match=words):
            Lock.read(path)
    bad = json.loads(json.dumps(raw))
    bad["artifacts"]["text/spacy/en_core_web_sm-3.8.0"]["files"] = {"../x": entry["files"][first]}
    path.write_text(json.dumps(bad))
    with pytest.raises(LockError, match="file path"):
        Lock.read(path)
    bad = json.loads(json.dumps(raw))
    bad["artifacts"]["visual/emonet/emonet_8.pth"]["files"] = {}
    path.write_text(json.dumps(bad))
    with pytest.raises(LockError, match="only a directory"):
        Lock.read(path)
    # a lock written before manifests still loads
    old = json.loads(json.dumps(raw))
    for value in old["artifacts"].values():
        value.pop("files", None)
    path.write_text(json.dumps(old))
    assert Lock.read(path).artifacts["text/spacy/en_core_web_sm-3.8.0"].files is None


# -- the pipeline: an empty root to doctor ok and loads -----------------------------------------


def test_pull_an_empty_root_from_a_loopback_mirror_then_doctor_and_load(
    served: Path, mirror: MirrorServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    catalog = str(catalog_of(served))
    argv = ["pull", *NAMES, "--root", str(root), "--catalog", catalog, "--from", mirror.url]
    assert run_cli([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and not report["dry_run"]
    assert {a["status"] for a in report["artifacts"]} == {"fetched"}
    gets = mirror.gets()
    assert len(gets) == len(set(gets)), "a file was fetched twice"
    served_files = [f for f in visible(served) if not f.startswith(".dp_models/")]
    assert visible(root) == served_files
    assert "bytetrack_tracker" in {a["spec"] for a in report["artifacts"]}  # required
    assert run_cli(["doctor", *NAMES, "--root", str(root), "--catalog", catalog]) == 0
    mm = ModelManager(models_root=root, catalog=catalog)
    with network_guard(NAMES):
        for name in NAMES:
            assert mm.load(name) is not None
    # a second pull of the complete root fetches nothing
    before = len(mirror.gets())
    assert run_cli(argv) == 0
    assert "pulled 0 artifacts" in capsys.readouterr().out
    assert len(mirror.gets()) == before


def test_pull_from_a_directory_mirror_with_the_function(served: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    report = dp_models.pull(
        ["spacy_en_core_web_sm", SMALL],
        root=root,
        mirrors=[str(served)],
        catalog=catalog_of(served),
    )
    assert {a.status for a in report.artifacts} == {"fetched"}
    assert report.bytes == sum(a.size for a in report.artifacts) > 0
    again = dp_models.pull([SMALL], root=root, mirrors=[str(served)], catalog=catalog_of(served))
    assert [a.status for a in again.artifacts] == ["present"]
    mm = ModelManager(models_root=root, catalog=catalog_of(served))
    assert mm.pull(["spacy_en_core_web_sm"], mirrors=[str(served)]).artifacts[0].status == "present"


def test_mirrors_are_tried_in_order_and_come_from_the_environment(
    served: Path, mirror: MirrorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    monkeypatch.setenv(ENV_MIRRORS, f"{empty}, {mirror.url}")
    assert Settings.resolve().mirrors == (str(empty), mirror.url)
    report = dp_models.pull([SMALL], root=tmp_path / "root", catalog=catalog_of(served))
    assert report.artifacts[0].files[0].source == mirror.url


def test_dry_run_lists_files_sources_and_bytes_and_fetches_nothing(
    served: Path, mirror: MirrorServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    argv = ["pull", "spacy_en_core_web_sm", "--root", str(root), "--catalog"]
    argv += [str(catalog_of(served)), "--from", mirror.url, "--dry-run"]
    assert run_cli(argv) == 0
    out = capsys.readouterr().out
    assert "would fetch 1 artifact" in out and f"from {mirror.url}" in out
    assert mirror.gets() == [] and visible(root) == []
    assert run_cli([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dry_run"] and report["bytes"] == report["artifacts"][0]["size"] > 0
    assert all(f["source"] == mirror.url for f in report["artifacts"][0]["files"])


def test_a_wrong_file_in_the_root_is_replaced(served: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    target = root / "visual/emonet/emonet_8.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the weights")
    report = dp_models.pull([SMALL], root=root, mirrors=[str(served)], catalog=catalog_of(served))
    assert report.artifacts[0].status == "fetched"
    assert target.read_bytes() == (served / "visual/emonet/emonet_8.pth").read_bytes()


# -- faults: typed errors, nothing partial visible ----------------------------------------------


def pull_small(served: Path, root: Path, url: str, name: str = SMALL) -> Any:
    return dp_models.pull([name], root=root, mirrors=[fast(url)], catalog=catalog_of(served))


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("fault", "error", "words"),
    [
        ("404", SourceNotFoundError, "no mirror has it"),
        ("500", SourceUnavailableError, "HTTP 500"),
        ("loop", RedirectLoopError, "redirects loop"),
        ("short", SourceUnavailableError, "ended after 0"),
        ("long", PulledFileMismatchError, "announces"),
        ("long-unannounced", PulledFileMismatchError, "longer than the pinned"),
        ("wrong", PulledFileMismatchError, "expected"),
    ],
)
def test_a_faulty_mirror_is_a_typed_error_and_nothing_is_visible(
    served: Path,
    mirror: MirrorServer,
    tmp_path: Path,
    fault: str,
    error: type[Exception],
    words: str,
) -> None:
    mirror.faults["*"] = fault
    root = tmp_path / "root"
    with pytest.raises(error, match=words) as caught:
        pull_small(served, root, mirror.url, "spacy_en_core_web_sm" if fault == "wrong" else SMALL)
    assert visible(root) == []
    assert temporary(root) == []
    if isinstance(caught.value, PulledFileMismatchError) and fault == "wrong":
        assert caught.value.source == mirror.url
        assert caught.value.expected != caught.value.actual


@pytest.mark.adversarial
def test_a_connection_cut_mid_file_is_resumed_with_a_range_request(
    served: Path, mirror: MirrorServer, tmp_path: Path
) -> None:
    mirror.faults["*"] = "cut-once"
    pull_small(served, tmp_path / "root", mirror.url)
    ranges = [r for method, _, r in mirror.requests if method == "GET"]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    assert (
        run_cli(
            [
                "doctor",
                SMALL,
                "--root",
                str(tmp_path / "root"),
                "--catalog",
                str(catalog_of(served)),
            ]
        )
        == 0
    )


def test_a_slow_mirror_still_delivers(served: Path, mirror: MirrorServer, tmp_path: Path) -> None:
    mirror.faults["*"] = "slow"
    assert pull_small(served, tmp_path / "root", mirror.url).artifacts[0].status == "fetched"


@pytest.mark.adversarial
def test_two_pulls_of_one_root_fetch_each_file_once(
    served: Path, mirror: MirrorServer, tmp_path: Path
) -> None:
    mirror.faults["*"] = "slow"
    root = tmp_path / "root"
    root.mkdir()
    names = ["spacy_en_core_web_sm", SMALL]
    results: list[Any] = []

    def one() -> None:
        results.append(
            dp_models.pull(names, root=root, mirrors=[mirror.url], catalog=catalog_of(served))
        )

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 2
    gets = mirror.gets()
    assert gets and len(gets) == len(set(gets)), "a file was fetched by both pulls"
    statuses = sorted(a.status for r in results for a in r.artifacts)
    assert statuses == ["fetched", "fetched", "present", "present"]


@pytest.mark.adversarial
def test_credentials_in_a_mirror_url_are_sent_and_never_shown(
    served: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = MirrorServer(served, auth=("puller", SECRET))
    try:
        url = f"http://puller:{SECRET}@127.0.0.1:{server.port}"
        base = ["pull", SMALL, "--catalog", str(catalog_of(served)), "--from", url]
        assert run_cli([*base, "--root", str(tmp_path / "a"), "--json"]) == 0
        assert run_cli([*base, "--root", str(tmp_path / "b")]) == 0
        assert run_cli([*base, "--root", str(tmp_path / "c"), "--dry-run"]) == 0
        server.faults["*"] = "500"
        assert run_cli([*base, "--root", str(tmp_path / "d"), "--json"]) == 1
        assert run_cli([*base, "--root", str(tmp_path / "e")]) == 1
        out, err = capsys.readouterr()
        assert "***@127.0.0.1" in out + err
        assert SECRET not in out + err and "puller" not in out + err
        # without the credentials the server refuses: a typed error, no secret in it
        server.faults.clear()
        with pytest.raises(SourceUnavailableError, match="401") as caught:
            pull_small(served, tmp_path / "f", f"http://127.0.0.1:{server.port}")
        assert SECRET not in str(caught.value)
        settings = Settings.resolve(mirrors=[url])
        assert SECRET not in repr(settings) and SECRET not in json.dumps(settings.shown())
    finally:
        server.close()


@pytest.mark.adversarial
@pytest.mark.parametrize(
    "failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()]
)
def test_disk_full_or_ctrl_c_mid_file_leaves_no_partial_file(
    served: Path,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: BaseException,
) -> None:
    written: list[int] = []
    real = transfer_module._write_chunk

    def write(f: Any, data: Any) -> None:
        if written:
            raise failure
        written.append(len(data))
        real(f, data[: len(data) // 2])
        raise failure

    monkeypatch.setattr(transfer_module, "_write_chunk", write)
    root = tmp_path / "root"
    with pytest.raises(type(failure)):
        pull_small(served, root, mirror.url, "spacy_en_core_web_sm")
    assert written
    assert visible(root) == [] and temporary(root) == []
    assert [p for p in root.rglob("*") if pull_module.LOCK_DIR not in p.parts and p.is_dir()] in (
        [],
        [root / "text", root / "text/spacy"],
    )
    monkeypatch.setattr(transfer_module, "_write_chunk", real)
    pull_small(served, root, mirror.url, "spacy_en_core_web_sm")  # the next pull starts clean
    assert visible(root)


@pytest.mark.adversarial
def test_unpinned_artifacts_are_refused_before_anything_is_fetched(
    served: Path, mirror: MirrorServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = shutil.copytree(catalog_of(served), tmp_path / "catalog")
    (catalog / "catalog.lock.json").unlink()
    with pytest.raises(NotPullableError, match="--pin") as caught:
        dp_models.pull([SMALL], root=tmp_path / "root", mirrors=[mirror.url], catalog=catalog)
    assert caught.value.paths == ["visual/emonet/emonet_8.pth"]
    assert mirror.requests == []
    # a lock without manifests (written before them): directories cannot be pulled
    lock = Lock.read(catalog_of(served) / "catalog.lock.json")
    old = Lock(
        catalog / "catalog.lock.json",
        {k: type(v)(v.kind, v.sha256, v.size) for k, v in lock.artifacts.items()},
    )
    old.write()
    with pytest.raises(NotPullableError, match="no manifest"):
        dp_models.pull(
            ["spacy_en_core_web_sm"],
            root=tmp_path / "root",
            mirrors=[mirror.url],
            catalog=Catalog.load(catalog),
        )
    argv = ["pull", "--root", str(tmp_path / "root"), "--catalog", str(catalog), "--json"]
    assert run_cli([*argv, "--from", mirror.url]) == 1  # neither names, --users nor --all
    assert json.loads(capsys.readouterr().out)["error"]["type"] == "ConfigurationError"
    assert run_cli(argv) == 1  # no mirror
    assert "no mirror" in json.loads(capsys.readouterr().out)["error"]["message"]


@pytest.mark.parametrize("kind", ["http", "directory"])
def test_a_file_its_spec_pins_without_a_size_is_pulled_and_checked_by_digest(
    served: Path, mirror: MirrorServer, tmp_path: Path, kind: str
) -> None:
    """Upstream digests in specs often come without a size (clip_vit_b32)."""
    import yaml

    catalog = shutil.copytree(catalog_of(served), tmp_path / "catalog")
    lock = Lock.read(catalog / "catalog.lock.json")
    pinned = lock.artifacts["visual/emonet/emonet_8.pth"]
    spec_file = next(catalog.rglob("emonet_8.yaml"))
    data = yaml.safe_load(spec_file.read_text())
    data["artifacts"][0]["sha256"] = pinned.sha256
    spec_file.write_text(yaml.safe_dump(data, sort_keys=False))
    rest = {k: v for k, v in lock.artifacts.items() if k != "visual/emonet/emonet_8.pth"}
    Lock(catalog / "catalog.lock.json", rest).write()
    source = mirror.url if kind == "http" else str(served)
    report = dp_models.pull([SMALL], root=tmp_path / "root", mirrors=[source], catalog=catalog)
    assert report.artifacts[0].size == pinned.size
    mirror.faults["*"] = "wrong"
    if kind == "http":
        with pytest.raises(PulledFileMismatchError, match="expected"):
            dp_models.pull([SMALL], root=tmp_path / "other", mirrors=[source], catalog=catalog)
        assert visible(tmp_path / "other") == []


@pytest.mark.adversarial
def test_credentials_are_not_sent_to_a_server_the_mirror_redirects_to(
    served: Path, mirror: MirrorServer, tmp_path: Path
) -> None:
    guarded = MirrorServer(served, auth=("puller", SECRET))
    try:
        guarded.faults["*"] = mirror.url
        url = f"http://puller:{SECRET}@127.0.0.1:{guarded.port}"
        report = dp_models.pull(
            [SMALL], root=tmp_path / "root", mirrors=[url], catalog=catalog_of(served)
        )
        assert report.artifacts[0].files[0].source == f"http://***@127.0.0.1:{guarded.port}"
        assert guarded.authorizations and all(a is not None for a in guarded.authorizations)
        assert mirror.gets() == ["visual/emonet/emonet_8.pth"]
        assert mirror.authorizations == [None]
    finally:
        guarded.close()


def test_users_selects_a_processor_s_specs(
    served: Path, mirror: MirrorServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # story_structure uses all-MiniLM-L6-v2 alone (the mirror serves no other text model)
    argv = ["pull", "--users", "VisualProcessor/story_structure", "--root", str(tmp_path / "root")]
    argv += ["--catalog", str(catalog_of(served)), "--from", mirror.url, "--json", "--jobs", "2"]
    assert run_cli(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert {a["spec"] for a in report["artifacts"]} == {"all_minilm_l6_v2"}
    paths = {a["path"] for a in report["artifacts"]}
    assert paths == {"text/sentence_transformers/all-MiniLM-L6-v2"}  # the model file with it
    assert (
        run_cli(
            [
                "doctor",
                "all_minilm_l6_v2",
                "--root",
                str(tmp_path / "root"),
                "--catalog",
                str(catalog_of(served)),
            ]
        )
        == 0
    )


def test_a_processor_no_spec_lists_is_an_error_not_an_empty_pull(
    served: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="'VisualProcessor/nope': no spec of the"):
        dp_models.pull(
            users="VisualProcessor/nope",
            root=tmp_path / "root",
            mirrors=[str(served)],
            catalog=catalog_of(served),
        )


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake root of every spec of a catalog of the packaged in-process specs, with its
    lock (Triton specs get no fake artifacts, so nothing pins theirs for `pull --all`)."""
    base = tmp_path_factory.mktemp("whole")
    catalog = Path(shutil.copytree(packaged_catalog_dir(), base / "catalog"))
    packaged = Catalog.load(catalog)
    for spec in packaged.values():
        if spec.runtime != "inprocess":
            (catalog / packaged.files[spec.name].relative_to(packaged.directory)).unlink()
    # emonet_8's class is the processor's, not installed here
    return fake_models_root(base / "root", catalog=catalog, substitute=["emonet_8"])


def test_pull_all_into_an_empty_root_then_doctor_is_all_ok_and_every_spec_loads(
    whole: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = MirrorServer(whole)
    try:
        root, catalog = tmp_path / "EMPTY", str(catalog_of(whole))
        argv = ["pull", "--all", "--from", server.url, "--root", str(root), "--catalog", catalog]
        assert run_cli([*argv, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        specs = set(Catalog.load(catalog))
        # the spaCy pipelines are pip-installed distributions: pip's, never pulled
        installed = {
            n for n, s in Catalog.load(catalog).items() if any(a.installed for a in s.artifacts)
        }
        assert installed == {"spacy_en_core_web_sm", "spacy_ru_core_news_sm"}
        assert {a["spec"] for a in report["artifacts"]} <= specs
        status = {a["spec"]: a["status"] for a in report["artifacts"]}
        assert {v for k, v in status.items() if k not in installed} == {"fetched"}
        assert {v for k, v in status.items() if k in installed} == {"installed"}
    finally:
        server.close()
    assert run_cli(["doctor", "--root", str(root), "--catalog", catalog, "--json"]) == 0
    doctor = json.loads(capsys.readouterr().out)
    assert doctor["ok"] and {r["name"] for r in doctor["specs"]} == specs
    assert {r["status"] for r in doctor["specs"] if r["name"] not in installed} == {"ok"}
    mm = ModelManager(models_root=root, catalog=catalog)
    with network_guard(sorted(specs)):
        for name in sorted(specs - installed):
            assert mm.load(name) is not None, name


def test_a_large_file_is_flushed_to_disk_while_it_streams(
    served: Path, mirror: MirrorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(transfer_module, "SYNC_EVERY", 512)
    monkeypatch.setattr(transfer_module, "_fdatasync", lambda fd: synced.append(fd))
    root = tmp_path / "root"
    pull_small(served, root, mirror.url)
    assert synced, "no flush while the file streamed"
    assert visible(root) == ["visual/emonet/emonet_8.pth"]
