"""A hardened YAML reader for spec files.

``yaml.safe_load`` already refuses every tag that would build a Python object. Spec files
are small, hand-written mappings, so this reader also refuses what they never need and an
attacker could use: anchors and aliases (the "billion laughs" alias bomb), duplicate keys
(PyYAML silently keeps the last one), several documents in one file, and files over
:data:`MAX_SPEC_BYTES`.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_SPEC_BYTES", "YamlRejectedError", "load_spec_yaml"]

#: A spec is a few KiB; anything far larger is a mistake or an attack.
MAX_SPEC_BYTES = 256 * 1024


class YamlRejectedError(ValueError):
    """The text is not acceptable spec YAML; the message says why and where."""


class _SpecLoader(yaml.SafeLoader):
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
        return super().compose_node(parent, index)

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
