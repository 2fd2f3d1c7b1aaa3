"""Catalog loading: every problem reported at once, with file and field; cross-spec rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dp_models import Catalog, CatalogError, SpecNotFoundError
from dp_models._errors import CatalogProblem
from dp_models._lock import Lock, LockEntry
from dp_models._settings import ENV_CATALOG, packaged_catalog_dir

from .conftest import SpecWriter, inprocess_spec

DIGEST_A = "a" * 64
DIGEST_B = "b" * 64


def problems(exc: pytest.ExceptionInfo[CatalogError]) -> list[tuple[str, str]]:
    return [(p.file, p.field) for p in exc.value.problems]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def test_loads_a_valid_catalog(catalog_dir: Path, write_spec: SpecWriter) -> None:
    write_spec("alpha")
    write_spec("beta", area="audio")
    catalog = Catalog.load(catalog_dir)
    assert sorted(catalog) == ["alpha", "beta"]
    assert catalog["beta"].artifacts[0].path == "beta/weights.pt"
    assert catalog.files["beta"] == catalog_dir / "audio" / "beta.yaml"
    assert not catalog.lock.exists


def test_every_problem_is_reported_at_once(catalog_dir: Path, write_spec: SpecWriter) -> None:
    write_spec("good")
    write_spec("typo", inprocess_spec("typo", "- {path: a.pt, format: pt}", "optinal: true\n"))
    write_spec("badtype", inprocess_spec("badtype", "- {path: a.pt, format: pt, size: '12'}"))
    write_spec("broken", "name: broken\nversion: [unclosed\n")
    before = snapshot(catalog_dir)
    with pytest.raises(CatalogError, match=r"3 problems") as exc:
        Catalog.load(catalog_dir)
    found = problems(exc)
    assert ("visual/typo.yaml", "optinal") in found
    assert ("visual/badtype.yaml", "artifacts[0].size") in found
    assert ("visual/broken.yaml", "") in found
    assert isinstance(exc.value, ValueError)
    assert exc.value.catalog == catalog_dir
    assert snapshot(catalog_dir) == before  # loading writes nothing


def test_unknown_key_suggests_the_known_one(catalog_dir: Path, write_spec: SpecWriter) -> None:
    write_spec("typo", inprocess_spec("typo", "- {path: a.pt, format: pt}", "optinal: true\n"))
    with pytest.raises(CatalogError) as exc:
        Catalog.load(catalog_dir)
    (problem,) = exc.value.problems
    assert problem == CatalogProblem(
        "visual/typo.yaml",
        "optinal",
        "unknown key 'optinal'; did you mean 'optional'? (see docs/spec.md)",
    )
    assert "visual/typo.yaml: optinal: unknown key" in str(exc.value)


def test_wrong_type_is_not_coerced(catalog_dir: Path, write_spec: SpecWriter) -> None:
    body = inprocess_spec("v", "- {path: a.pt, format: pt}").replace('version: "1"', "version: 1.0")
    write_spec("v", body)
    with pytest.raises(
        CatalogError,
        match=r"visual/v.yaml: version: Input should be a valid "
        r"string \(got 1.0\)",
    ):
        Catalog.load(catalog_dir)


def test_duplicate_spec_name(catalog_dir: Path, write_spec: SpecWriter) -> None:
    write_spec("twin")
    write_spec("twin", area="audio")
    with pytest.raises(
        CatalogError,
        match=r"duplicate spec name 'twin', also defined in "
        r"audio/twin.yaml",
    ) as exc:
        Catalog.load(catalog_dir)
    assert problems(exc) == [("visual/twin.yaml", "name")]


def test_file_must_be_named_after_its_spec(catalog_dir: Path, write_spec: SpecWriter) -> None:
    write_spec("alpha", filename="other.yaml")
    with pytest.raises(CatalogError, match=r"must live in a file named alpha.yaml") as exc:
        Catalog.load(catalog_dir)
    assert problems(exc) == [("visual/other.yaml", "name")]


def test_requires_must_name_existing_specs(catalog_dir: Path, write_spec: SpecWriter) -> None:
    write_spec("tokenizer")
    write_spec(
        "asr",
        inprocess_spec("asr", "- {path: a.pt, format: pt}", "requires: [tokenizer, tokeniser2]\n"),
    )
    with pytest.raises(CatalogError, match=r"names no spec in the catalog: 'tokeniser2'") as exc:
        Catalog.load(catalog_dir)
    assert problems(exc) == [("visual/asr.yaml", "requires[1]")]


def test_requires_cycle(catalog_dir: Path, write_spec: SpecWriter) -> None:
    write_spec("a", inprocess_spec("a", "- {path: a.pt, format: pt}", "requires: [b]\n"))
    write_spec("b", inprocess_spec("b", "- {path: b.pt, format: pt}", "requires: [a]\n"))
    with pytest.raises(CatalogError, match=r"dependency cycle: a -> b -> a"):
        Catalog.load(catalog_dir)


def test_closure_lists_dependencies_first(catalog_dir: Path, write_spec: SpecWriter) -> None:
    write_spec("tok")
    write_spec("enc", inprocess_spec("enc", "- {path: e.pt, format: pt}", "requires: [tok]\n"))
    write_spec("asr", inprocess_spec("asr", "- {path: a.pt, format: pt}", "requires: [enc, tok]\n"))
    catalog = Catalog.load(catalog_dir)
    assert [s.name for s in catalog.closure("asr")] == ["tok", "enc", "asr"]


def test_empty_catalog_is_an_error(catalog_dir: Path) -> None:
    (catalog_dir / "README.md").write_text("no specs here")
    with pytest.raises(CatalogError, match=r"holds no spec files") as exc:
        Catalog.load(catalog_dir)
    assert problems(exc) == [(str(catalog_dir), "")]


def test_missing_catalog_directory(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"catalog directory does not exist"):
        Catalog.load(tmp_path / "nowhere")


def test_non_mapping_document(catalog_dir: Path, write_spec: SpecWriter) -> None:
    write_spec("listy", "- just\n- a list\n")
    with pytest.raises(CatalogError, match=r"one mapping of fields, found list"):
        Catalog.load(catalog_dir)


def test_one_path_is_one_artifact(catalog_dir: Path, write_spec: SpecWriter) -> None:
    write_spec("a", inprocess_spec("a", f"- {{path: shared.pt, format: pt, sha256: {DIGEST_A}}}"))
    write_spec("b", inprocess_spec("b", f"- {{path: shared.pt, format: pt, sha256: {DIGEST_B}}}"))
    with pytest.raises(CatalogError, match=r"'shared.pt' is '" + DIGEST_B) as exc:
        Catalog.load(catalog_dir)
    assert problems(exc) == [("visual/b.yaml", "artifacts[0].sha256")]


def test_spec_and_lock_must_agree(catalog_dir: Path, write_spec: SpecWriter) -> None:
    write_spec("a", inprocess_spec("a", f"- {{path: w.pt, format: pt, sha256: {DIGEST_A}}}"))
    Lock(catalog_dir / "catalog.lock.json", {"w.pt": LockEntry("file", DIGEST_B, 3)}).write()
    with pytest.raises(
        CatalogError,
        match=r"spec pins a{64} but the lock catalog.lock.json has "
        r"b{64}",
    ) as exc:
        Catalog.load(catalog_dir)
    assert problems(exc) == [("visual/a.yaml", "artifacts[0].sha256")]
    # `dp-models lock` must still be able to load the catalog to rewrite the lock
    assert "a" in Catalog.load(catalog_dir, check_lock=False)


def test_malformed_lock_is_a_catalog_problem(catalog_dir: Path, write_spec: SpecWriter) -> None:
    write_spec("a")
    (catalog_dir / "catalog.lock.json").write_text('{"format": 1, "artifacts": {"../x": 1}}')
    with pytest.raises(CatalogError, match=r"lock .* is malformed") as exc:
        Catalog.load(catalog_dir)
    assert problems(exc) == [(str(catalog_dir / "catalog.lock.json"), "")]


def test_lock_pins_and_spec_pins(catalog_dir: Path, write_spec: SpecWriter) -> None:
    write_spec(
        "a",
        inprocess_spec(
            "a",
            f"""
        - {{path: up.pt, format: pt, sha256: {DIGEST_A}}}
        - {{path: house.pt, format: pt}}
        - {{path: loose.pt, format: pt}}
    """,
        ),
    )
    Lock(catalog_dir / "catalog.lock.json", {"house.pt": LockEntry("file", DIGEST_B, 7)}).write()
    catalog = Catalog.load(catalog_dir)
    up, house, loose = catalog["a"].artifacts
    assert catalog.pin(up) is not None and catalog.pin(up).source == "spec"  # type: ignore[union-attr]
    pin = catalog.pin(house)
    assert pin is not None and (pin.sha256, pin.size, pin.source) == (DIGEST_B, 7, "lock")
    assert catalog.pin(loose) is None


def test_unknown_name_suggests_close_names(catalog_dir: Path, write_spec: SpecWriter) -> None:
    write_spec("clip_vit_b32")
    catalog = Catalog.load(catalog_dir)
    with pytest.raises(SpecNotFoundError, match=r"did you mean 'clip_vit_b32'\?") as exc:
        catalog["clip_vit_b23"]
    assert exc.value.name == "clip_vit_b23"
    assert exc.value.suggestions == ("clip_vit_b32",)
    assert isinstance(exc.value, KeyError)


def test_catalog_location_resolution(
    catalog_dir: Path, write_spec: SpecWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_spec("from_env")
    assert "clip_vit_b32" in Catalog.load()  # packaged
    assert Catalog.load().directory == packaged_catalog_dir()
    monkeypatch.setenv(ENV_CATALOG, str(catalog_dir))
    assert list(Catalog.load()) == ["from_env"]
    assert "clip_vit_b32" in Catalog.load(packaged_catalog_dir())  # argument beats env


def test_lock_file_is_written_atomically_and_sorted(tmp_path: Path) -> None:
    path = tmp_path / "catalog.lock.json"
    Lock(
        path, {"z.pt": LockEntry("file", DIGEST_A, 1), "a/b": LockEntry("dir", DIGEST_B, 2)}
    ).write()
    data = json.loads(path.read_text())
    assert list(data["artifacts"]) == ["a/b", "z.pt"]
    assert Lock.read(path).artifacts["a/b"] == LockEntry("dir", DIGEST_B, 2)
    assert [p.name for p in tmp_path.iterdir()] == ["catalog.lock.json"]  # no temp files left


def test_a_path_pinned_by_one_spec_is_pinned_for_all(
    catalog_dir: Path, write_spec: SpecWriter
) -> None:
    write_spec("a", inprocess_spec("a", f"- {{path: shared.pt, format: pt, sha256: {DIGEST_A}}}"))
    write_spec("b", inprocess_spec("b", "- {path: shared.pt, format: pt}"))
    catalog = Catalog.load(catalog_dir)
    pin = catalog.pin(catalog["b"].artifacts[0])
    assert pin is not None and (pin.sha256, pin.source) == (DIGEST_A, "spec")


def test_requiring_a_broken_spec_reports_only_the_broken_file(
    catalog_dir: Path, write_spec: SpecWriter
) -> None:
    write_spec("tokenizer", "name: tokenizer\nversion: 1\n")
    write_spec(
        "asr", inprocess_spec("asr", "- {path: a.pt, format: pt}", "requires: [tokenizer]\n")
    )
    with pytest.raises(CatalogError) as exc:
        Catalog.load(catalog_dir)
    assert {p.file for p in exc.value.problems} == {"visual/tokenizer.yaml"}


def test_oversized_spec_reports_its_real_size(catalog_dir: Path, write_spec: SpecWriter) -> None:
    path = write_spec("huge", "#" * 300_000 + "\n")
    with pytest.raises(CatalogError, match=rf"file is {path.stat().st_size} bytes"):
        Catalog.load(catalog_dir)


def test_bad_path_message_does_not_repeat_the_value(
    catalog_dir: Path, write_spec: SpecWriter
) -> None:
    write_spec("a", inprocess_spec("a", "- {path: ../x.pt, format: pt}"))
    with pytest.raises(CatalogError) as exc:
        Catalog.load(catalog_dir)
    (problem,) = exc.value.problems
    assert problem.field == "artifacts[0].path"
    assert problem.message == (
        "artifact path '../x.pt' must not contain '..' (paths stay inside MODELS_ROOT)"
    )


def test_served_digest_of_a_triton_spec(catalog_dir: Path, write_spec: SpecWriter) -> None:
    triton = """
        name: {name}
        version: "1"
        family: test
        role: test
        users: [AudioProcessor/test]
        runtime: triton
        engine: onnx
        artifacts: [{{path: triton/{name}/model.onnx, format: onnx}}]
        triton:
          model_name: {name}
          model_version: 1
          platform: onnxruntime_onnx
          max_batch_size: 0
          inputs: [{{name: x, datatype: FP32, shape: [1]}}]
          outputs: [{{name: y, datatype: FP32, shape: [1]}}]
          {extra}
    """
    write_spec("explicit", triton.format(name="explicit", extra=f"weights_digest: {DIGEST_A}"))
    write_spec("locked", triton.format(name="locked", extra=""))
    write_spec("unknown", triton.format(name="unknown", extra=""))
    write_spec("local")
    Lock(
        catalog_dir / "catalog.lock.json",
        {"triton/locked/model.onnx": LockEntry("file", DIGEST_B, 5)},
    ).write()
    catalog = Catalog.load(catalog_dir)
    explicit = catalog.expected_digest(catalog["explicit"])
    locked = catalog.expected_digest(catalog["locked"])
    assert explicit is not None and (explicit.sha256, explicit.source) == (DIGEST_A, "spec")
    assert locked is not None and (locked.sha256, locked.source) == (DIGEST_B, "lock")
    assert catalog.expected_digest(catalog["unknown"]) is None
    assert catalog.expected_digest(catalog["local"]) is None


# -- notebooks: reprs --------------------------------------------------------------------


def test_catalog_html_lists_every_spec_escaped(catalog_dir: Path, write_spec: SpecWriter) -> None:
    write_spec(
        "a",
        inprocess_spec(
            "a",
            f"""
        - {{path: up.pt, format: pt, sha256: {DIGEST_A}}}
        - {{path: loose.pt, format: pt}}
    """,
            'description: "<img src=x onerror=alert(1)>"\noptional: true\n',
        ).replace("users: [VisualProcessor/test]", "users: ['<script>alert(1)</script>']"),
    )
    write_spec("b", area="audio")
    catalog = Catalog.load(catalog_dir)
    shown = catalog._repr_html_()
    assert shown.count("<tr>") == 3  # the header and one row per spec
    assert ">a</code>" in shown and "<code>b</code>" in shown
    assert "<script>" not in shown and "&lt;script&gt;alert(1)&lt;/script&gt;" in shown
    assert "<img" not in shown and 'title="&lt;img src=x onerror=alert(1)&gt;"' in shown
    assert "2 specs</strong>" in shown and "catalog.lock.json" in shown
    pinned = [catalog.pin_summary(catalog[name]) for name in ("a", "b")]
    assert pinned == ["1 of 2", "no"]


def test_spec_repr_is_one_short_line(catalog_dir: Path, write_spec: SpecWriter) -> None:
    write_spec("a")
    write_spec("b", inprocess_spec("b", "- {path: b.pt, format: pt}", "optional: true\n"))
    catalog = Catalog.load(catalog_dir)
    assert repr(catalog["a"]) == "<Spec a 1 inprocess torch>"
    assert repr(catalog["b"]) == "<Spec b 1 inprocess torch optional>"
    assert repr(catalog) == f"<Catalog {catalog_dir} with 2 specs>"
