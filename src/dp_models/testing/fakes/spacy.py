"""Fake pipelines for ``spacy``: a blank pipeline with a sentencizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..._errors import FakeWeightsError
from ..._spec import Spec
from ...loaders.base import require
from ...loaders.spacy import SpacyArgs
from . import write_placeholder

__all__ = ["make_spacy"]


def make_spacy(spec: Spec, root: Path) -> dict[str, Any] | None:
    """``spacy.blank(<lang>)`` plus a rule-based ``sentencizer`` (no weights), its meta name
    and version set to the spec's (``loader_args.pipeline`` gives language and name;
    without it, ``xx_pipeline``), saved with ``to_disk``; placeholders for other artifacts.
    About 150 kB; Russian needs no extra package (only the real ``ru_core_news_sm``
    lemmatizer needs pymorphy3). An ``installed`` artifact (a pip-installed pipeline) is
    not under the root, so it is not faked: the spec then finds its distribution, or not."""
    spacy = require("spacy", extra="spacy", spec=spec.name)
    pipeline = SpacyArgs.model_validate(spec.loader_args).pipeline or "xx_pipeline"
    lang, _, meta_name = pipeline.partition("_")
    for art in spec.artifacts:
        if art.installed is not None:
            continue
        path = root / art.path
        if art.format != "spacy_pipeline":
            write_placeholder(path, art.format)
            continue
        try:
            nlp = spacy.blank(lang)
        except (ImportError, KeyError, ValueError) as exc:
            raise FakeWeightsError(
                f"spec {spec.name!r}: spaCy has no language {lang!r} for a blank fake "
                f"pipeline ({exc})"
            ) from exc
        nlp.add_pipe("sentencizer")
        nlp.meta["name"] = meta_name or "pipeline"
        nlp.meta["version"] = spec.version
        nlp.meta["description"] = "dp_models fake: a blank pipeline with a sentencizer"
        path.mkdir(parents=True, exist_ok=True)
        nlp.to_disk(path)
    return None
