"""Writing a Triton model repository from the catalog (``dp-models triton export``).

Layout written for each exported Triton spec (``triton.model_name`` ``M``, pinned
``triton.model_version`` ``N``)::

    OUT/
      M/
        config.pbtxt          name, platform or backend, max_batch_size, input, output,
                              version_policy { specific { versions: [N] } },
                              parameters weights_digest (and dp_models_spec)
        N/
          model.onnx          a file artifact, under its own base name
          ...                 every other artifact of the spec beside it
          (model.py ...)      a ``triton_python`` directory artifact: its contents, here

Placement rules, in order:

- a ``file`` artifact lands at ``N/<base name of its path>``;
- a ``dir`` artifact of format ``triton_python`` (a Python-backend model directory) has
  its files placed directly in ``N/``; it must hold ``model.py``;
- any other ``dir`` artifact lands at ``N/<base name of its path>/`` (e.g. an ONNX model
  with external data as ``model.onnx/``);
- two artifacts that land on the same name are an error.

The spec's first artifact is the model Triton loads. When its name is not the
platform's default (``model.onnx``, ``model.plan``, ``model.pt``, ``model.py``) the
config names it with ``default_model_filename``. A spec with ``device: cpu`` or
``device: cuda`` gets an ``instance_group`` of that kind; ``auto`` leaves it to Triton.

The ``weights_digest`` parameter is :meth:`~dp_models._catalog.Catalog.served_digest`:
the spec's ``triton.weights_digest``, else the pin of its first artifact. Clients read it
back through the model configuration (``GET /v2/models/M/config``, ``parameters``) and
compare it with the catalog, so a server cannot silently serve other weights.

Before anything is written every artifact is verified against its pin (spec or lock) with
:class:`~dp_models._verify.Verifier`: an unpinned, missing, resized or changed artifact
raises its typed error. The repository is assembled in a temporary directory beside
``OUT`` and renamed into place (verified once more, through the digest cache, after the
copy), so a failed export leaves no partial repository. ``OUT`` must not exist or be an
empty directory.

``link=True`` hard-links the files instead of copying them (instant, no extra space; the
repository then shares the files with MODELS_ROOT, which is read-only in practice) and
falls back to a symlink to the file in MODELS_ROOT where a hard link is impossible (another
file system): the server must then see MODELS_ROOT at the same path.

Serve it with ``tritonserver --model-repository OUT``; the server loads exactly version
``N`` of each model, whatever other version folders the repository holds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .._catalog import Catalog
from .._digest import Hasher, stat_key
from .._errors import ArtifactChangedError, SourceUnavailableError, TritonExportError
from .._io import fsync_directory, open_regular
from .._settings import Settings
from .._spec import Spec, TritonSection, TritonTensor
from .._urls import redact_url
from .._verify import ArtifactReport, Verifier

__all__ = [
    "CONFIG_FILENAME",
    "DEFAULT_MODEL_FILENAMES",
    "WEIGHTS_DIGEST_PARAMETER",
    "ExportedModel",
    "export_repository",
    "render_config",
]

#: The model configuration file in each model's folder.
CONFIG_FILENAME = "config.pbtxt"
#: The key of the model config parameter that carries the served weights digest.
WEIGHTS_DIGEST_PARAMETER = "weights_digest"
#: The key of the model config parameter that names the spec the model was exported from.
SPEC_PARAMETER = "dp_models_spec"
#: The file name Triton looks for in a version folder, per platform.
DEFAULT_MODEL_FILENAMES = {
    "onnxruntime_onnx": "model.onnx",
    "tensorrt_plan": "model.plan",
    "pytorch_libtorch": "model.pt",
    "python": "model.py",
}
#: Triton datatype (spec, protocol) to model-config data_type.
_CONFIG_TYPES = {
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "FP16": "TYPE_FP16",
    "FP32": "TYPE_FP32",
    "FP64": "TYPE_FP64",
    "BF16": "TYPE_BF16",
    "BYTES": "TYPE_STRING",
}
_INSTANCE_KINDS = {"cpu": "KIND_CPU", "cuda": "KIND_GPU"}


@dataclass(frozen=True)
class ExportedModel:
    """One model folder of an exported repository."""

    spec: str
    model_name: str
    version: int
    weights_digest: str
    #: The model folder once the export is complete: ``OUT/<model_name>``, or for an
    #: export to a store its ``s3://BUCKET/PREFIX/<model_name>``.
    directory: Path | str
    #: Files of the version folder, relative to it, '/'-separated, sorted.
    files: tuple[str, ...] = field(default=())


# -- config.pbtxt -------------------------------------------------------------------------


def _quote(value: str) -> str:
    """A protobuf text-format string literal."""
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def _tensors(label: str, tensors: Sequence[TritonTensor]) -> list[str]:
    lines = [f"{label} ["]
    for i, t in enumerate(tensors):
        dims = ", ".join(str(d) for d in t.shape)
        lines += [
            "  {",
            f"    name: {_quote(t.name)}",
            f"    data_type: {_CONFIG_TYPES[t.datatype]}",
            f"    dims: [ {dims} ]",
            "  }" + ("," if i < len(tensors) - 1 else ""),
        ]
    lines.append("]")
    return lines


def render_config(
    spec: Spec,
    weights_digest: str | None,
    *,
    platform: str | None = None,
    versions: Sequence[int] | None = None,
    default_model_filename: str | None = None,
) -> str:
    """The ``config.pbtxt`` text of a Triton spec.

    ``weights_digest`` goes into the ``weights_digest`` parameter (None leaves it out).
    ``platform`` replaces the spec's ``triton.platform`` (the test stand-ins are Python
    models whatever the spec's platform) and ``versions`` the pinned version in the
    version policy. ``python`` is written as ``backend: "python"``, every other platform
    as ``platform: "..."``.

    >>> from dp_models._catalog import Catalog
    >>> text = render_config(Catalog.load()["clip_vit_b32_triton"], "ab" * 32)
    >>> print(text.splitlines()[1:4])
    ['name: "clip_vit_b32"', 'platform: "onnxruntime_onnx"', 'max_batch_size: 32']
    """
    triton: TritonSection | None = spec.triton
    if triton is None:
        raise TritonExportError(
            f"spec {spec.name!r} runs in-process; only Triton specs have a model config",
            spec=spec.name,
        )
    platform = platform or triton.platform
    pinned = list(versions) if versions is not None else [triton.model_version]
    lines = [
        f"# Written by dp_models from spec {spec.name} (version {spec.version}); do not edit.",
        f"name: {_quote(triton.model_name)}",
        f"backend: {_quote(platform)}" if platform == "python" else f"platform: {_quote(platform)}",
        f"max_batch_size: {triton.max_batch_size}",
    ]
    if default_model_filename is not None:
        lines.append(f"default_model_filename: {_quote(default_model_filename)}")
    lines += _tensors("input", triton.inputs)
    lines += _tensors("output", triton.outputs)
    lines.append(
        "version_policy: { specific: { versions: [ " + ", ".join(str(v) for v in pinned) + " ] } }"
    )
    kind = _INSTANCE_KINDS.get(spec.device)
    if kind is not None:
        lines.append(f"instance_group [ {{ count: 1, kind: {kind} }} ]")
    parameters = {SPEC_PARAMETER: spec.name}
    if weights_digest is not None:
        parameters[WEIGHTS_DIGEST_PARAMETER] = weights_digest
    for key in sorted(parameters):
        lines += [
            "parameters: {",
            f"  key: {_quote(key)}",
            f"  value: {{ string_value: {_quote(parameters[key])} }}",
            "}",
        ]
    return "\n".join(lines) + "\n"


# -- export -------------------------------------------------------------------------------


@dataclass
class _Plan:
    spec: Spec
    triton: TritonSection
    digest: str
    default_model_filename: str | None
    #: (path relative to the version folder, source file)
    files: list[tuple[str, Path]]


def _select(catalog: Catalog, names: Iterable[str] | None) -> list[Spec]:
    if names is None:
        specs = [s for s in catalog.values() if s.runtime == "triton"]
        if not specs:
            raise TritonExportError(f"catalog {catalog.directory} has no Triton specs to export")
    else:
        specs = [catalog[n] for n in dict.fromkeys(names)]
        inprocess = [s.name for s in specs if s.runtime != "triton"]
        if inprocess:
            raise TritonExportError(
                f"not Triton specs (they run in-process): {', '.join(inprocess)}. "
                "`dp-models list --runtime triton` lists the ones that can be exported.",
                spec=inprocess[0],
            )
    owners: dict[str, str] = {}
    for spec in specs:
        assert spec.triton is not None
        if spec.triton.platform == "ensemble":
            raise TritonExportError(
                f"spec {spec.name!r} is a Triton ensemble: its steps are not described by a "
                "spec, so its config cannot be generated. Write the ensemble's config.pbtxt "
                "by hand and export the specs of its steps.",
                spec=spec.name,
            )
        if not spec.artifacts:
            raise TritonExportError(
                f"spec {spec.name!r} lists no artifacts, so there is nothing to put in its "
                "model folder. Add the served model's files to the spec's artifacts.",
                spec=spec.name,
            )
        other = owners.setdefault(spec.triton.model_name, spec.name)
        if other != spec.name:
            raise TritonExportError(
                f"specs {other!r} and {spec.name!r} both serve Triton model "
                f"{spec.triton.model_name!r}; one repository holds one model of a name. "
                "Export them into separate repositories.",
                spec=spec.name,
            )
    return specs


def _plan(catalog: Catalog, spec: Spec, reports: Sequence[ArtifactReport]) -> _Plan:
    triton = spec.triton
    assert triton is not None
    served = catalog.expected_digest(spec)
    # verified artifacts are pinned, so the first one gives a digest when the spec does not
    assert served is not None
    files: list[tuple[str, Path]] = []
    owner: dict[str, str] = {}
    model_file: str | None = None
    for i, report in enumerate(reports):
        art = report.artifact
        base = art.path.rsplit("/", 1)[-1]
        if art.kind == "file":
            placed = [(base, report.path)]
            top = [base]
        elif art.format == "triton_python":
            placed = list(report.files)
            top = sorted({rel.split("/", 1)[0] for rel, _ in placed})
            if i == 0 and "model.py" not in dict(placed):
                raise TritonExportError(
                    f"spec {spec.name!r}: the Python-backend directory {art.path!r} has no "
                    "model.py at its top; Triton's Python backend loads "
                    "<version>/model.py.",
                    spec=spec.name,
                )
        else:
            placed = [(f"{base}/{rel}", p) for rel, p in report.files]
            top = [base]
        for name in top:
            if name in owner:
                raise TritonExportError(
                    f"spec {spec.name!r}: artifacts {owner[name]!r} and {art.path!r} both land "
                    f"on {name!r} in the version folder; rename one of them.",
                    spec=spec.name,
                )
            owner[name] = art.path
        if i == 0:
            model_file = "model.py" if art.format == "triton_python" and art.kind == "dir" else base
        files += placed
    default = DEFAULT_MODEL_FILENAMES.get(triton.platform)
    return _Plan(
        spec,
        triton,
        served.sha256,
        model_file if model_file != default else None,
        sorted(files, key=lambda item: item[0]),
    )


def _check_target(out: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise TritonExportError(f"{out} exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        raise TritonExportError(
            f"{out} is not empty. Export into a new (or empty) directory, then swap it in for "
            "the served repository; an export never overwrites one in place."
        )


def _place(source: Path, target: Path, *, link: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(source, target)
            return
        except OSError:  # another file system, or links not allowed: a symlink then
            os.symlink(os.path.realpath(source), target)
            return
    shutil.copy2(source, target)


def export_repository(
    catalog: Catalog,
    models_root: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    names: Iterable[str] | None = None,
    *,
    link: bool = False,
    hasher: Hasher | None = None,
) -> list[ExportedModel]:
    """Write a Triton model repository at ``out_dir`` for ``names`` (every Triton spec of
    ``catalog`` when None), with the artifacts from ``models_root`` (resolved like
    everywhere: the argument, else ``$DP_MODELS_ROOT``, else ``$MODELS_ROOT``).

    ``out_dir`` is a directory, or an S3-compatible store's ``s3://BUCKET/PREFIX`` (an
    empty prefix; the AWS settings say where and as whom, :mod:`dp_models._s3`) for
    servers started with ``--model-repository=s3://...``: every file is uploaded verified
    (the bytes read while uploading must hash to what was verified) and each model's
    ``config.pbtxt`` last; on failure what was uploaded is deleted.

    Every artifact is verified against its pin first; any problem raises its typed
    :class:`~dp_models._errors.ArtifactError` and nothing is written. See the module
    documentation for the layout. ``hasher`` brings a digest cache and policy (the default
    hashes without a cache). Returns one :class:`ExportedModel` per spec, in order.
    """
    specs = _select(catalog, names)
    root = Settings.resolve(models_root=models_root).require_root()
    to_store = isinstance(out_dir, str) and out_dir.lower().startswith("s3://")
    if isinstance(out_dir, str) and "://" in out_dir and not to_store:
        raise TritonExportError(
            f"cannot export to {redact_url(out_dir)!r}: a repository goes to a directory, or to "
            "an S3-compatible store as s3://BUCKET/PREFIX"
        )
    if to_store and link:
        raise TritonExportError("--link hard-links files into a directory; not into a store")
    out = Path(out_dir).absolute()
    if not to_store:
        _check_target(out)
    hasher = hasher or Hasher()
    verifier = Verifier(catalog, root, hasher)
    reports = verifier.verify(specs)
    by_spec: dict[str, list[ArtifactReport]] = {}
    for report in reports:
        by_spec.setdefault(report.spec, []).append(report)
    plans = [_plan(catalog, spec, by_spec[spec.name]) for spec in specs]
    if to_store:
        assert isinstance(out_dir, str)
        # each file as it was verified: sha256, size and identity (inode, size, times)
        verified = {
            str(p): (sha256, size, identity)
            for r in reports
            for (_, p), (_, sha256, size), identity in zip(
                r.files, r.manifest, r.identities, strict=True
            )
        }
        where = _export_to_store(
            plans,
            out_dir,
            verified,
            lambda: verifier.verify(specs),
            always=hasher.policy == "always",
        )
        return _exported(plans, lambda name: f"{where}/{name}")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the server may run as another user
        for plan in plans:
            model_dir = tmp / plan.triton.model_name
            version_dir = model_dir / str(plan.triton.model_version)
            version_dir.mkdir(parents=True)
            (model_dir / CONFIG_FILENAME).write_text(_config(plan), encoding="utf-8")
            for rel, source in plan.files:
                _place(source, version_dir / rel, link=link)
        # Whatever changed in MODELS_ROOT while it was copied shows up here (a changed file
        # misses the digest cache and is hashed again), and the export is abandoned.
        verifier.verify(specs)
        _check_target(out)
        if out.is_dir():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_directory(out.parent)  # make the rename durable where the OS allows it
    return _exported(plans, lambda name: out / name)


def _config(plan: _Plan) -> str:
    return render_config(plan.spec, plan.digest, default_model_filename=plan.default_model_filename)


def _exported(plans: Sequence[_Plan], folder: Callable[[str], Path | str]) -> list[ExportedModel]:
    return [
        ExportedModel(
            spec=p.spec.name,
            model_name=p.triton.model_name,
            version=p.triton.model_version,
            weights_digest=p.digest,
            directory=folder(p.triton.model_name),
            files=tuple(rel for rel, _ in p.files),
        )
        for p in plans
    ]


def _changed(spec: Spec, source: Path, shown: str) -> ArtifactChangedError:
    return ArtifactChangedError(
        f"spec {spec.name!r}: {source} changed after it was verified (before or while it was "
        f"uploaded to {shown}); the export was abandoned. Run it again once MODELS_ROOT is "
        "settled.",
        spec=spec.name,
        path=source,
    )


def _export_to_store(
    plans: Sequence[_Plan],
    url: str,
    verified: Mapping[str, tuple[str, int, tuple[int, int, int, int, int]]],
    reverify: Callable[[], object],
    *,
    always: bool,
) -> str:
    """Upload the repository to the empty ``s3://`` prefix ``url``: every file, each the
    very file ``verified`` (its identity unmoved, and a small one hashed again), then,
    once the whole export verifies again, each model's ``config.pbtxt``, so a server never
    finds a model whose files are not all there and verified. Its shown URL."""
    from .._s3 import S3Destination
    from .._transfer import _PutMismatchError

    dest = S3Destination(url)
    written: list[str] = []
    try:
        if dest.holds_anything():
            raise TritonExportError(
                f"{dest.shown} is not empty. Export into a new (or empty) prefix, then point "
                "the servers' --model-repository at it; an export never overwrites a served "
                "repository in place."
            )
        try:
            for plan in plans:
                model = plan.triton.model_name
                for rel, source in plan.files:
                    key = f"{model}/{plan.triton.model_version}/{rel}"
                    sha256, size, identity = verified[str(source)]
                    fd = open_regular(source)
                    try:

                        def unchanged(
                            fd: int = fd, identity: tuple[int, int, int, int, int] = identity
                        ) -> bool:
                            return stat_key(os.fstat(fd)) == identity

                        if not unchanged():
                            raise _changed(plan.spec, source, dest.shown)
                        written.append(key)
                        # under the "always" policy the bytes are hashed again as they go up
                        gate = None if always else unchanged
                        dest.put(key, fd, size, sha256, lambda n: None, unchanged=gate)
                    except _PutMismatchError:
                        raise _changed(plan.spec, source, dest.shown) from None
                    finally:
                        os.close(fd)
            reverify()  # what changed in MODELS_ROOT meanwhile abandons the export
            # the configs last: a server polling the store loads nothing before this
            for plan in plans:
                key = f"{plan.triton.model_name}/{CONFIG_FILENAME}"
                written.append(key)
                dest.write(key, _config(plan).encode("utf-8"), content_type="text/plain")
        except BaseException:
            dest.delete(written)
            raise
    except SourceUnavailableError as exc:
        raise TritonExportError(
            f"cannot write the Triton repository to {dest.shown}: {exc}. Check the bucket "
            "and the AWS settings (credentials, region, AWS_ENDPOINT_URL_S3)."
        ) from None
    finally:
        dest.close()
    return dest.shown
