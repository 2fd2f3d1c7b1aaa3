"""Generated files are committed and current."""

from __future__ import annotations

from pathlib import Path

from dp_models import Catalog
from dp_models._docgen import main, render_catalog_md, targets

REPO = Path(__file__).resolve().parents[1]


def test_catalog_md_is_current() -> None:
    committed = (REPO / "docs" / "catalog.md").read_text(encoding="utf-8")
    assert committed == render_catalog_md(Catalog.load(REPO / "spec_catalog")), (
        "docs/catalog.md is stale: run `python -m dp_models._docgen --write`"
    )


def test_catalog_md_lists_every_spec() -> None:
    text = (REPO / "docs" / "catalog.md").read_text(encoding="utf-8")
    for name in Catalog.load(REPO / "spec_catalog"):
        assert f"| `{name}` |" in text


def test_docgen_detects_and_rewrites_stale_files(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    import shutil

    shutil.copytree(REPO / "spec_catalog", repo / "spec_catalog")
    (repo / "docs" / "catalog.md").write_text("stale\n")
    assert main(["--repo", str(repo)]) == 1
    assert main(["--repo", str(repo), "--write"]) == 0
    assert main(["--repo", str(repo)]) == 0
    for path, text in targets(repo).items():
        assert path.read_text(encoding="utf-8") == text
