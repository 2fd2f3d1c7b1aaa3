"""`dp-models lock`: pin in-house artifacts, verify spec pins, refuse and write nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from dp_models import Catalog, LockError
from dp_models._digest import DigestCache, Hasher
from dp_models._lock import Lock, LockEntry
from dp_models._pinning import check_lock, plan_lock, write_lock
from dp_models._verify import Verifier

from .conftest import SpecWriter, inprocess_spec, make_file, sha256

WEIGHTS = b"weights v1"
UPSTREAM = b"upstream weights"


@pytest.fixture
def setup(catalog_dir: Path, models_root: Path, write_spec: SpecWriter) -> Path:
    write_spec(
        "model",
        inprocess_spec(
            "model",
            f"""
        - {{path: m/weights.pt, format: pt}}
        - {{path: m/upstream.pt, format: pt, sha256: {sha256(UPSTREAM)}}}
        - {{path: m/tokenizer, kind: dir, format: tokenizer_dir}}
    """,
        ),
    )
    make_file(models_root / "m/weights.pt", WEIGHTS)
    make_file(models_root / "m/upstream.pt", UPSTREAM)
    make_file(models_root / "m/tokenizer/vocab.txt", b"a\nb\n")
    make_file(models_root / "m/tokenizer/sub/merges.txt", b"a b\n")
    return catalog_dir


def verifier(catalog: Catalog, root: Path) -> Verifier:
    return Verifier(catalog, root, Hasher(DigestCache(None)))


def test_lock_pins_what_the_specs_do_not(setup: Path, models_root: Path) -> None:
    catalog = Catalog.load(setup)
    plan = write_lock(catalog, verifier(catalog, models_root))
    assert sorted(plan.added) == ["m/tokenizer", "m/weights.pt"]
    lock = Lock.read(setup / "catalog.lock.json")
    assert lock.artifacts["m/weights.pt"] == LockEntry("file", sha256(WEIGHTS), len(WEIGHTS))
    assert lock.artifacts["m/tokenizer"].kind == "dir"
    assert lock.artifacts["m/tokenizer"].size == len(b"a\nb\n") + len(b"a b\n")
    assert "m/upstream.pt" not in lock.artifacts  # pinned by its spec
    reloaded = Catalog.load(setup)
    assert check_lock(reloaded, verifier(reloaded, models_root)) == []
    assert all(r.ok for r in verifier(reloaded, models_root).check(list(reloaded.values())))


def test_lock_refuses_a_root_that_disagrees_with_a_spec_pin(setup: Path, models_root: Path) -> None:
    (models_root / "m/upstream.pt").write_bytes(b"tampered weights")
    catalog = Catalog.load(setup)
    with pytest.raises(LockError, match=r"(?s)not writing the lock.*m/upstream.pt has sha256"):
        write_lock(catalog, verifier(catalog, models_root))
    assert not (setup / "catalog.lock.json").exists()
    assert list(setup.iterdir()) == [setup / "visual"]  # no temporary files either


def test_check_reports_drift_and_writes_nothing(setup: Path, models_root: Path) -> None:
    catalog = Catalog.load(setup)
    write_lock(catalog, verifier(catalog, models_root))
    before = (setup / "catalog.lock.json").read_bytes()
    (models_root / "m/weights.pt").write_bytes(b"weights v2")
    reloaded = Catalog.load(setup)
    problems = check_lock(reloaded, verifier(reloaded, models_root))
    assert problems == [
        "m/weights.pt: the root's digest differs from the lock's; run `dp-models lock` if the "
        "new file is intended, else re-provision it"
    ]
    assert (setup / "catalog.lock.json").read_bytes() == before


def test_relock_updates_a_deliberate_change(setup: Path, models_root: Path) -> None:
    catalog = Catalog.load(setup)
    write_lock(catalog, verifier(catalog, models_root))
    (models_root / "m/weights.pt").write_bytes(b"weights v2")
    reloaded = Catalog.load(setup, check_lock=False)
    plan = write_lock(reloaded, verifier(reloaded, models_root))
    assert plan.changed == ["m/weights.pt"]
    assert Lock.read(setup / "catalog.lock.json").artifacts["m/weights.pt"].sha256 == sha256(
        b"weights v2"
    )


def test_absent_artifacts_keep_their_pin_and_stale_pins_are_dropped(
    setup: Path, models_root: Path
) -> None:
    stale = LockEntry("file", "c" * 64, 1)
    kept = LockEntry("file", sha256(WEIGHTS), len(WEIGHTS))
    Lock(setup / "catalog.lock.json", {"m/weights.pt": kept, "gone.pt": stale}).write()
    (models_root / "m/weights.pt").unlink()
    catalog = Catalog.load(setup)
    plan = plan_lock(catalog, verifier(catalog, models_root))
    assert plan.kept_absent == ["m/weights.pt"]
    assert plan.dropped == ["gone.pt"]
    assert plan.lock.artifacts["m/weights.pt"] == kept
    problems = check_lock(catalog, verifier(catalog, models_root))
    assert any(p.startswith("gone.pt: pinned in the lock but no spec") for p in problems)
    assert any(p.startswith("m/tokenizer: present in the root but not pinned") for p in problems)


def test_unpinned_and_absent_is_reported(setup: Path, models_root: Path) -> None:
    (models_root / "m/weights.pt").unlink()
    catalog = Catalog.load(setup)
    plan = write_lock(catalog, verifier(catalog, models_root))
    assert plan.unpinned_absent == ["m/weights.pt"]
    assert "m/weights.pt" not in Lock.read(setup / "catalog.lock.json").artifacts


def test_lock_refuses_a_spec_pinned_artifact_of_the_wrong_kind(
    setup: Path, models_root: Path
) -> None:
    (models_root / "m/upstream.pt").unlink()
    (models_root / "m/upstream.pt").mkdir()
    catalog = Catalog.load(setup)
    with pytest.raises(LockError, match=r"'m/upstream.pt' must be a file, but .* is a directory"):
        write_lock(catalog, verifier(catalog, models_root))
    assert not (setup / "catalog.lock.json").exists()


def test_a_path_pinned_by_another_spec_is_not_locked(
    setup: Path, models_root: Path, write_spec: SpecWriter
) -> None:
    write_spec("other", inprocess_spec("other", "- {path: m/upstream.pt, format: pt}"))
    catalog = Catalog.load(setup)
    plan = write_lock(catalog, verifier(catalog, models_root))
    assert "m/upstream.pt" not in plan.lock.artifacts
    assert check_lock(Catalog.load(setup), verifier(catalog, models_root)) == []
