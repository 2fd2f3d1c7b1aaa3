"""A hardened YAML reader for spec files.

``yaml.safe_load`` already refuses every tag that would build a Python object. Spec files
are small, hand-written mappings, so this reader also refuses what they never need and an
attacker could use: anchors and aliases (the "billion laughs" alias bomb), duplicate keys
(PyYAML silently keeps the last one), several documents in one file, files over
:data:`MAX_SPEC_BYTES`, collections nested more than :data:`MAX_NESTING` levels deep (the
composer recurses once per level: 10,000 levels would end in a ``RecursionError``) and
integers written with more than :data:`MAX_INT_CHARS` characters (Python refuses to
convert more than 4,300 digits, and a long hexadecimal one would make an error message
unprintable). A value a constructor cannot build (``2021-02-30``, ``!!int abc``) is
refused with its line, never passed on as a bare ``ValueError``.
"""

from __future__ import annotations

from typing import Any

import yaml

from ._errors import YamlRejectedError

__all__ = ["MAX_INT_CHARS", "MAX_NESTING", "MAX_SPEC_BYTES", "load_spec_yaml"]

#: A spec is a few KiB; anything far larger is a mistake or an attack.
MAX_SPEC_BYTES = 256 * 1024

#: A spec nests a few levels (spec, triton, inputs, one tensor, its shape); more is hostile.
MAX_NESTING = 64

#: The longest integer literal read; sizes in bytes need 20 digits at most.
MAX_INT_CHARS = 100


class _SpecLoader(yaml.SafeLoader):
    _nesting = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise YamlRejectedError(
                f"line {event.start_mark.line + 1}: YAML aliases ('*{event.anchor}') are not "
                "allowed in spec files; write the value out"
            )
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if getattr(event, "anchor", None) is not None:
            raise YamlRejectedError(
                f"line {event.start_mark.line + 1}: YAML anchors ('&{event.anchor}') are not "
                "allowed in spec files"
            )
        line = event.start_mark.line + 1
        if not isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            return super().compose_node(parent, index)
        # counted here, before the composer recurses, so depth never reaches Python's limit
        self._nesting += 1
        try:
            if self._nesting > MAX_NESTING:
                raise YamlRejectedError(
                    f"line {line}: collections nested more than "
                    f"{MAX_NESTING} levels deep; a spec file is a shallow mapping"
                )
            return super().compose_node(parent, index)
        finally:
            self._nesting -= 1

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (YamlRejectedError, yaml.YAMLError):
            raise
        except Exception as exc:  # a safe constructor's ValueError, KeyError, ...: bad value
            detail = f"{type(exc).__name__}: {exc}"
            if len(detail) > 200:
                detail = detail[:200] + "..."
            raise YamlRejectedError(
                f"line {node.start_mark.line + 1}: cannot read the value ({detail})"
            ) from None

    def construct_yaml_int(self, node: Any) -> Any:
        text = self.construct_scalar(node)
        if isinstance(text, str) and len(text) > MAX_INT_CHARS:
            raise YamlRejectedError(
                f"line {node.start_mark.line + 1}: an integer of {len(text)} characters; "
                f"a spec's integers are at most {MAX_INT_CHARS} characters long"
            )
        return super().construct_yaml_int(node)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str) and key in seen:
                raise YamlRejectedError(
                    f"line {key_node.start_mark.line + 1}: duplicate key {key!r}"
                )
            if isinstance(key, str):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


# PyYAML dispatches on the function registered per tag, not on the method: register ours
_SpecLoader.add_constructor("tag:yaml.org,2002:int", _SpecLoader.construct_yaml_int)


def load_spec_yaml(raw: bytes) -> Any:
    """Parse one spec file's bytes. Raises :class:`YamlRejectedError` with a readable reason."""
    if len(raw) > MAX_SPEC_BYTES:
        raise YamlRejectedError(
            f"file is {len(raw)} bytes; a spec file is at most {MAX_SPEC_BYTES} bytes"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlRejectedError(f"not UTF-8 text ({exc})") from None
    try:
        docs = list(yaml.load_all(text, Loader=_SpecLoader))
    except YamlRejectedError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise YamlRejectedError(f"{where}malformed YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise YamlRejectedError(f"malformed YAML: {exc}") from None
    if len(docs) != 1:
        raise YamlRejectedError(f"a spec file holds exactly one YAML document, found {len(docs)}")
    return docs[0]
