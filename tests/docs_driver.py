"""Runs python and pycon blocks of the docs for tests/docsnippets.py, in this process, one
namespace for the chunks of one run: ``python docs_driver.py CHUNKS.json``.

After each chunk it prints ``@@dp-models-docs-end INDEX ok|failed@@`` on a line of its own
(a failed chunk's traceback before it, naming the Markdown file and line), and stops at the
first failure. ``tmp_path`` (a fresh directory, as in a pytest test) is predefined."""

from __future__ import annotations

import doctest
import json
import sys
import traceback
from pathlib import Path
from typing import Any


def run(chunk: dict[str, Any], namespace: dict[str, Any]) -> bool:
    if chunk["kind"] == "pycon":
        test = doctest.DocTestParser().get_doctest(
            chunk["code"], namespace, chunk["file"], chunk["file"], chunk["line"] - 1
        )
        flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        result = doctest.DocTestRunner(optionflags=flags).run(
            test, out=sys.stdout.write, clear_globs=False
        )
        return result.failed == 0
    # Blank lines first, so that a traceback names the line of the Markdown file.
    source = "\n" * (chunk["line"] - 1) + chunk["code"]
    try:
        exec(compile(source, chunk["file"], "exec"), namespace)
    except BaseException:  # what the block raised is the report (SystemExit included)
        traceback.print_exc()
        return False
    return True


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    tmp_path = Path(spec["tmp_path"])
    tmp_path.mkdir(parents=True, exist_ok=True)
    namespace: dict[str, Any] = {"__name__": "__main__", "tmp_path": tmp_path}
    for index, chunk in enumerate(spec["chunks"]):
        ok = run(chunk, namespace)
        sys.stderr.flush()
        sys.stdout.write(f"\n@@dp-models-docs-end {index} {'ok' if ok else 'failed'}@@\n")
        sys.stdout.flush()
        if not ok:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
