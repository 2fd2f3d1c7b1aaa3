"""Hostile and malformed spec files are rejected with a reason, through the catalog too."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dp_models import Catalog, CatalogError
from dp_models._errors import YamlRejectedError
from dp_models._yaml import MAX_SPEC_BYTES, load_spec_yaml

from .conftest import SpecWriter

ALIAS_BOMB = b"""\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_plain_mapping_loads() -> None:
    assert load_spec_yaml(b"name: x\nusers: [a, b]\n") == {"name": "x", "users": ["a", "b"]}


def test_alias_bomb_is_rejected_fast() -> None:
    start = time.perf_counter()
    with pytest.raises(YamlRejectedError, match=r"line 1: YAML anchors \('&a'\) are not allowed"):
        load_spec_yaml(ALIAS_BOMB)
    assert time.perf_counter() - start < 5  # not expanded: it would take minutes and GiBs


def test_alias_without_anchor_is_rejected() -> None:
    with pytest.raises(YamlRejectedError, match=r"line 1: YAML (aliases|anchors)"):
        load_spec_yaml(b"a: *nowhere\n")


def test_alias_is_rejected() -> None:
    # an anchor on a scalar key's value is refused before its alias is reached
    with pytest.raises(YamlRejectedError, match=r"anchors \('&x'\)"):
        load_spec_yaml(b"a: &x 1\nb: *x\n")


def test_duplicate_keys_are_rejected() -> None:
    with pytest.raises(YamlRejectedError, match=r"line 2: duplicate key 'name'"):
        load_spec_yaml(b"name: a\nname: b\n")


def test_python_tags_are_not_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = f"!!python/object/apply:os.system ['touch {marker}']\n".encode()
    with pytest.raises(
        YamlRejectedError, match=r"malformed YAML: could not determine a constructor"
    ):
        load_spec_yaml(payload)
    assert not marker.exists()


def test_oversized_file_is_rejected_before_parsing() -> None:
    with pytest.raises(YamlRejectedError, match=rf"a spec file is at most {MAX_SPEC_BYTES} bytes"):
        load_spec_yaml(b"#" * (MAX_SPEC_BYTES + 1))


def test_several_documents_are_rejected() -> None:
    with pytest.raises(YamlRejectedError, match=r"exactly one YAML document, found 2"):
        load_spec_yaml(b"a: 1\n---\nb: 2\n")


def test_not_utf8() -> None:
    with pytest.raises(YamlRejectedError, match=r"not UTF-8 text"):
        load_spec_yaml(b"name: \xff\xfe\n")


def test_malformed_yaml_names_the_line() -> None:
    with pytest.raises(
        YamlRejectedError, match=r"line 3, column 7: malformed YAML: expected .,. or .\]."
    ):
        load_spec_yaml(b"name: a\nversion: [1, 2\nfamily: x\n")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (ALIAS_BOMB.decode(), "YAML anchors"),
        ("name: a\nname: b\n", "duplicate key 'name'"),
        ("name: [unclosed\n", "malformed YAML"),
        ("!!python/name:os.system\n", "could not determine a constructor"),
    ],
)
def test_catalog_reports_yaml_problems_with_the_file(
    catalog_dir: Path, write_spec: SpecWriter, body: str, message: str
) -> None:
    write_spec("hostile", body)
    with pytest.raises(CatalogError, match=message) as exc:
        Catalog.load(catalog_dir)
    (problem,) = exc.value.problems
    assert problem.file == "visual/hostile.yaml"


def test_catalog_rejects_an_oversized_file(catalog_dir: Path, write_spec: SpecWriter) -> None:
    write_spec("huge", "# padding\n" * (MAX_SPEC_BYTES // 10 + 1))
    with pytest.raises(CatalogError, match=r"visual/huge.yaml: file is \d+ bytes"):
        Catalog.load(catalog_dir)
