"""A real Triton Inference Server for tests, and stand-in models for the catalog's Triton specs.

>>> from dp_models.testing.triton import TritonServer, write_standin_repository
>>> served = write_standin_repository(Catalog.load(), tmp_path / "repo")  # doctest: +SKIP
>>> with TritonServer().start(tmp_path / "repo") as server:             # doctest: +SKIP
...     client = tritonclient.http.InferenceServerClient(server.address)

The server
    :class:`TritonServer` runs the ``tritonserver`` binary that ``scripts/triton_env.sh``
    installs into ``.venv-triton`` (from the ``nvidia-pytriton`` wheel: the real server
    with its Python backend, on CPU), or the one ``$DP_MODELS_TRITONSERVER`` names. It
    listens on free loopback ports only, in its own process group, and ``stop()`` ends
    that group for sure (SIGTERM, then SIGKILL after a deadline). ``.venv-triton`` is a
    separate environment because the Python backend's stub runs the ``python`` first on
    ``PATH``, which must have numpy<2 (with numpy 2 a model loads, then answers with empty
    tensors), while the project runs on numpy 2.

The stand-ins
    :func:`write_standin_repository` writes one Python-backend model per Triton spec:
    same model name, version, tensor names, datatypes, shapes and max batch size as the
    spec, ``config.pbtxt`` rendered by :func:`~dp_models.triton.repository.render_config`,
    and a ``model.py`` that uses only numpy and ``triton_python_backend_utils``. Its
    outputs are deterministic and derived from the inputs (:func:`expected_standin_outputs`
    computes them here, with the very function the model runs):

    for each batch item, ``s`` = the sum over the inputs of the mean of the item's values
    (a BYTES element counts as its length); output number ``j`` (in spec order) of model
    version ``v`` is filled with ``s + 100 * v + j``, cast to the output's datatype (BYTES:
    the value's ``repr`` encoded), with every ``-1`` dimension of the output
    :data:`STANDIN_VARIABLE_DIM` long.

    The ``weights_digest`` config parameter is the spec's served digest
    (:meth:`~dp_models._catalog.Catalog.served_digest`) or, for a spec whose artifacts are
    not pinned yet, :func:`standin_digest` (a fixed digest made from the spec's name and
    version). :func:`write_standin_catalog` writes the catalog copy the client must be
    given so that it expects exactly what is served; ``digest_override`` serves another
    digest (or none) on purpose, to see the client's check fail.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import inspect
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from .._catalog import Catalog
from .._errors import TritonServerError, TritonServerNotFoundError
from .._settings import LOCK_FILENAME
from .._spec import Spec
from ..triton.checks import NUMPY_DTYPES
from ..triton.repository import CONFIG_FILENAME, render_config

__all__ = [
    "ENV_TRITONSERVER",
    "STANDIN_VARIABLE_DIM",
    "TritonServer",
    "expected_standin_outputs",
    "find_tritonserver",
    "standin_digest",
    "standin_model_source",
    "write_onnx_repository",
    "write_standin_catalog",
    "write_standin_repository",
]

#: Path of a ``tritonserver`` binary to use instead of the one in ``.venv-triton``.
ENV_TRITONSERVER = "DP_MODELS_TRITONSERVER"
#: The script that installs the server into ``.venv-triton``.
TRITON_ENV_SCRIPT = "scripts/triton_env.sh"
#: Length of every variable (``-1``) dimension in a stand-in's outputs.
STANDIN_VARIABLE_DIM = 3

_VENV = ".venv-triton"
_SERVER_GLOB = "lib/python3*/site-packages/pytriton/tritonserver/bin/tritonserver"
#: Spec datatype to numpy dtype, for the stand-ins: the client's map, without BF16 (numpy
#: has no bfloat16) and with BYTES as object arrays.
_NUMPY_TYPES: dict[str, npt.DTypeLike] = {
    **{k: v for k, v in NUMPY_DTYPES.items() if k != "BF16"},
    "BYTES": np.object_,
}


# -- finding the server ---------------------------------------------------------------------


def _search_dirs() -> list[Path]:
    """Where ``.venv-triton`` may be: the working directory and those above it, and the
    checkout this module lives in (an editable install)."""
    here = Path.cwd().resolve()
    dirs = [here, *here.parents]
    dirs += [p for p in Path(__file__).resolve().parents if p not in dirs]
    return dirs


def find_tritonserver(executable: str | os.PathLike[str] | None = None) -> Path:
    """The ``tritonserver`` binary: ``executable``, else ``$DP_MODELS_TRITONSERVER``, else the
    one ``scripts/triton_env.sh`` installed in a ``.venv-triton`` of the working directory
    (or a directory above it) or of this checkout. Raises
    :class:`TritonServerNotFoundError` saying how to install it."""
    given = os.fspath(executable) if executable is not None else os.environ.get(ENV_TRITONSERVER)
    if given:
        path = Path(given).expanduser()
        origin = "the argument" if executable is not None else f"${ENV_TRITONSERVER}"
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise TritonServerNotFoundError(
                f"tritonserver {path} (from {origin}) is not an executable file. Point "
                f"{ENV_TRITONSERVER} at a tritonserver binary, or unset it and run "
                f"{TRITON_ENV_SCRIPT} to install one into {_VENV}."
            )
        return path
    looked: list[str] = []
    for base in _search_dirs():
        venv = base / _VENV
        looked.append(str(venv))
        for candidate in sorted(venv.glob(_SERVER_GLOB)):
            if os.access(candidate, os.X_OK):
                return candidate
    raise TritonServerNotFoundError(
        "no tritonserver binary found: the Triton tests run a real Triton Inference Server. "
        f"Install it with `{TRITON_ENV_SCRIPT}` (run from the repository root; it makes "
        f"{_VENV} from the nvidia-pytriton wheel; scripts/test.sh runs it for you), or set "
        f"{ENV_TRITONSERVER}=/path/to/tritonserver. Looked for {_VENV} in: "
        + ", ".join(looked[:4])
        + (", ..." if len(looked) > 4 else "")
    )


def _venv_of(executable: Path) -> Path | None:
    for parent in executable.resolve().parents:
        if (parent / "pyvenv.cfg").is_file():
            return parent
    return None


def _free_ports(host: str, count: int) -> list[int]:
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


# -- the server -----------------------------------------------------------------------------


class TritonServer:
    """A ``tritonserver`` process on loopback ports, for tests.

    >>> server = TritonServer().start([repo_a, repo_b])     # doctest: +SKIP
    >>> server.url, server.address                          # doctest: +SKIP
    ('http://127.0.0.1:41234', '127.0.0.1:41234')
    >>> server.stop()                                       # doctest: +SKIP

    ``start`` returns once ``/v2/health/ready`` answers 200 (the server and every model
    in the repositories are ready) and raises :class:`TritonServerError` with the log's
    tail if the server exits or is not ready within ``startup_timeout_s``. The ports are
    chosen at the first start and kept: ``stop()`` then ``start()`` (or :meth:`restart`)
    brings the server back at the same URL, as a restarted deployment would.

    ``private_shm=True`` gives the server a ``/dev/shm`` of its own: it runs in a mount
    namespace of its own (``unshare -m``, which needs root) with a fresh tmpfs there, as a
    server in another container on the same host has. It still listens on loopback, but
    cannot open a client's shared-memory regions.
    """

    def __init__(
        self,
        executable: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        startup_timeout_s: float = 120.0,
        stop_timeout_s: float = 3.0,
        log_verbose: int = 0,
        extra_args: Sequence[str] = (),
        private_shm: bool = False,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback or ":" in host:
            raise ValueError(f"the test server listens on an IPv4 loopback address, not {host!r}")
        self.executable = find_tritonserver(executable)
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.log_verbose = log_verbose
        self.extra_args = tuple(extra_args)
        self.private_shm = private_shm
        if private_shm and shutil.which("unshare") is None:
            raise TritonServerError(
                "private_shm=True runs the server under util-linux's unshare, which is not on PATH"
            )
        #: Directories, or ``s3://`` repositories (Triton's form; the server reads the AWS
        #: variables of the environment it is started in).
        self.repositories: tuple[Path | str, ...] = ()
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.startup_s: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        #: Name prefix of this server's shared-memory regions (/dev/shm): the Python
        #: backend's regions outlive a killed server, and stop() removes exactly these.
        self.shm_prefix = f"dp_models_triton_{os.getpid()}_{secrets.token_hex(4)}_"

    # -- addresses ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` of the HTTP endpoint (what ``tritonclient.http`` takes)."""
        return f"{self.host}:{self.http_port}"

    @property
    def url(self) -> str:
        """``http://host:port`` of the HTTP endpoint."""
        return f"http://{self.address}"

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def log_text(self) -> str:
        """The server's output so far (empty once stopped)."""
        if self._log_path is None:
            return ""
        try:
            return self._log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    # -- life cycle --------------------------------------------------------------------------

    def start(
        self, repositories: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None
    ) -> TritonServer:
        """Start serving ``repositories`` (one path or several; an ``s3://`` repository as
        a string; the last ones again when None) and wait until the server is ready.
        Returns ``self``."""
        if self.running:
            raise TritonServerError(f"the Triton server (pid {self.pid}) is already running")
        if repositories is not None:
            paths = (
                [repositories]
                if isinstance(repositories, (str, os.PathLike))
                else list(repositories)
            )
            self.repositories = tuple(
                str(p) if str(p).lower().startswith("s3://") else Path(p).resolve() for p in paths
            )
        if not self.repositories:
            raise TritonServerError("start() needs at least one model repository")
        for repo in self.repositories:
            if isinstance(repo, Path) and not repo.is_dir():
                raise TritonServerError(f"model repository {repo} is not a directory")
        chosen_here = not self.http_port
        for attempt in range(3):
            if chosen_here:
                self.http_port, self.grpc_port, self.metrics_port = _free_ports(self.host, 3)
            began = time.monotonic()
            self._launch()
            try:
                self._wait_ready()
            except TritonServerError as exc:
                log = self.log_text()
                self.kill()
                in_use = "already in use" in log or "Address in use" in log
                if chosen_here and in_use and attempt < 2:
                    continue  # another process took a port between choosing and binding
                raise TritonServerError(f"{exc}\n{_tail(log)}") from None
            self.startup_s = time.monotonic() - began
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def _command(self) -> list[str]:
        cmd = [str(self.executable)]
        if self.private_shm:  # a tmpfs of its own on /dev/shm, then the server in its place
            mount = 'mount -t tmpfs -o mode=1777 tmpfs /dev/shm && exec "$@"'
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", mount, "sh", *cmd]
        for repo in self.repositories:
            cmd += ["--model-repository", str(repo)]
        backends = self.executable.parent.parent / "backends"
        if backends.is_dir():  # the wheel's layout; a system install knows its own
            cmd += ["--backend-directory", str(backends)]
        cmd += [
            "--http-address",
            self.host,
            "--http-port",
            str(self.http_port),
            "--grpc-address",
            self.host,
            "--grpc-port",
            str(self.grpc_port),
            "--metrics-address",
            self.host,
            "--metrics-port",
            str(self.metrics_port),
            "--allow-sagemaker=false",
            "--allow-vertex-ai=false",
            "--backend-config",
            f"python,shm-region-prefix-name={self.shm_prefix}",
            "--exit-timeout-secs",
            str(max(0, int(self.stop_timeout_s))),
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--log-verbose",
            str(self.log_verbose),
            *self.extra_args,
        ]
        return cmd

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
            env.pop(name, None)
        venv = _venv_of(self.executable)
        if venv is not None:
            # the Python backend's stub runs the first `python` on PATH: the server's venv
            env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
            env["VIRTUAL_ENV"] = str(venv)
        return env

    def _launch(self) -> None:
        fd, name = tempfile.mkstemp(prefix="dp_models-tritonserver-", suffix=".log")
        self._log_path = Path(name)
        try:
            self._process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                start_new_session=True,  # its own process group, with the backend stubs
            )
        finally:
            os.close(fd)
        atexit.register(self.stop)

    def _wait_ready(self) -> None:
        assert self._process is not None
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
        deadline = time.monotonic() + self.startup_timeout_s
        ready = f"{self.url}/v2/health/ready"
        while True:
            code = self._process.poll()
            if code is not None:
                raise TritonServerError(
                    f"tritonserver {self.executable} exited with status {code} while starting "
                    f"on {self.address} with repositories "
                    f"{', '.join(map(str, self.repositories))}"
                )
            with contextlib.suppress(OSError):
                with opener.open(ready, timeout=1.0) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise TritonServerError(
                    f"tritonserver on {self.address} was not ready after "
                    f"{self.startup_timeout_s:.0f} s (a model that does not load keeps it "
                    "unready; see the log)"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server and everything it started: SIGTERM to the server, which unloads
        its models within ``stop_timeout_s`` (its ``--exit-timeout-secs``; an open client
        connection keeps it waiting that long), then SIGKILL to its whole process group,
        backend stubs included, and removal of its shared memory. Safe to call twice."""
        self._end(graceful=True)

    def kill(self) -> None:
        """End the server at once, as a crash would (SIGKILL to its process group)."""
        self._end(graceful=False)

    def _end(self, *, graceful: bool) -> None:
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None:
            if graceful and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                try:
                    process.wait(self.stop_timeout_s + 2.0)
                except subprocess.TimeoutExpired:
                    pass
            # backend stubs that outlive the server would keep memory and CPU
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
            _wait_group_gone(process.pid, 5.0)
            for region in Path("/dev/shm").glob(self.shm_prefix + "*"):
                with contextlib.suppress(OSError):
                    region.unlink()
        if self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None

    def restart(self) -> TritonServer:
        """Stop, then start the same repositories on the same ports."""
        self.stop()
        return self.start()

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running on {self.url}" if self.running else "stopped"
        return f"<TritonServer {state}>"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # start_new_session: the group id is the server's pid
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise


def _wait_group_gone(pgid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except OSError:
            return
        time.sleep(0.02)


def _tail(log: str, lines: int = 8) -> str:
    """The server log's error lines and its last ``lines`` lines, for a message."""
    if not log.strip():
        return "(the server wrote no log)"
    all_lines = log.rstrip().splitlines()
    errors = [
        line
        for line in all_lines[:-lines]
        if line.startswith("E") or "error" in line.lower() or "failed" in line.lower()
    ]
    shown = [*errors[-20:], *(["..."] if errors else []), *all_lines[-lines:]]
    return "the server's log (errors, then its last lines):\n" + textwrap.indent(
        "\n".join(shown), "  "
    )


# -- stand-in models ------------------------------------------------------------------------


def _standin_compute(
    inputs: list[Any], outputs: list[Any], version: int, batched: bool, variable_dim: int
) -> list[Any]:
    """The stand-in's outputs. ``inputs``: arrays in config order; ``outputs``: ``(dims,
    numpy dtype)`` in config order. This function's source is copied into every stand-in's
    model.py, so it uses numpy as ``np`` and nothing else."""
    count = int(inputs[0].shape[0]) if batched else 1
    total = np.zeros(count, dtype=np.float64)
    for array in inputs:
        if array.dtype == np.object_:
            array = np.vectorize(len, otypes=[np.float64])(array)
        values = np.asarray(array, dtype=np.float64).reshape(count, -1)
        if values.shape[1]:
            total += values.mean(axis=1)
    results = []
    for j, (dims, dtype) in enumerate(outputs):
        shape = tuple(variable_dim if int(d) == -1 else int(d) for d in dims)
        value = total + 100.0 * version + j
        filled = np.broadcast_to(value.reshape((count,) + (1,) * len(shape)), (count, *shape))
        if np.dtype(dtype) == np.object_:
            out = np.vectorize(lambda v: repr(float(v)).encode(), otypes=[np.object_])(filled)
        else:
            out = filled.astype(dtype)
        results.append(np.ascontiguousarray(out if batched else out[0]))
    return results


_MODEL_PY = '''\
"""A dp_models test stand-in for Triton model {model_name!r} (spec {spec!r}).

Written by dp_models.testing.triton.write_standin_repository: not a real model. Its outputs
are deterministic and derived from its inputs (see that module's documentation).
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

VARIABLE_DIM = {variable_dim}


{compute}

class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.version = int(args["model_version"])
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.inputs = [t["name"] for t in config["input"]]
        to_numpy = pb_utils.triton_string_to_numpy
        self.outputs = [
            (t["name"], [int(d) for d in t["dims"]], to_numpy(t["data_type"]))
            for t in config["output"]
        ]

    def execute(self, requests):
        responses = []
        for request in requests:
            arrays = [
                pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs
            ]
            values = _standin_compute(
                arrays,
                [(dims, dtype) for _, dims, dtype in self.outputs],
                self.version,
                self.batched,
                VARIABLE_DIM,
            )
            tensors = [
                pb_utils.Tensor(name, value)
                for (name, _, _), value in zip(self.outputs, values)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
'''


def standin_model_source(model_name: str = "standin", spec: str = "") -> str:
    """The ``model.py`` of a stand-in (one source for every stand-in: it reads its
    tensors from the model config Triton passes to ``initialize``)."""
    return _MODEL_PY.format(
        model_name=model_name,
        spec=spec,
        variable_dim=STANDIN_VARIABLE_DIM,
        compute=inspect.getsource(_standin_compute),
    )


def standin_digest(spec: Spec) -> str:
    """The made-up weights digest a stand-in serves for a spec whose artifacts are not pinned."""
    return hashlib.sha256(
        f"dp_models stand-in weights: {spec.name} {spec.version}".encode()
    ).hexdigest()


def expected_standin_outputs(
    spec: Spec, inputs: Mapping[str, Any], *, version: int | None = None
) -> dict[str, Any]:
    """What the stand-in of ``spec`` answers to ``inputs`` (arrays by input name, with the
    batch dimension when the spec has one), computed by the function the stand-in runs."""
    triton = spec.triton
    if triton is None:
        raise ValueError(f"spec {spec.name!r} is not a Triton spec")
    arrays = [np.asarray(inputs[t.name]) for t in triton.inputs]
    values = _standin_compute(
        arrays,
        [(t.shape, _NUMPY_TYPES[t.datatype]) for t in triton.outputs],
        version if version is not None else triton.model_version,
        triton.max_batch_size > 0,
        STANDIN_VARIABLE_DIM,
    )
    return {t.name: v for t, v in zip(triton.outputs, values, strict=True)}


def _triton_specs(catalog: Catalog, names: Iterable[str] | None) -> list[Spec]:
    if names is None:
        return [s for s in catalog.values() if s.runtime == "triton"]
    specs = [catalog[n] for n in dict.fromkeys(names)]
    wrong = [s.name for s in specs if s.runtime != "triton"]
    if wrong:
        raise ValueError(f"not Triton specs: {', '.join(wrong)}")
    return specs


def write_standin_repository(
    catalog: Catalog,
    out_dir: str | os.PathLike[str],
    names: Iterable[str] | None = None,
    *,
    digest_override: str | Mapping[str, str | None] | None = None,
    versions: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, str | None]:
    """Write a Triton model repository at ``out_dir`` (created; existing models of other
    names are kept) with a stand-in for each of ``names`` (every Triton spec of
    ``catalog`` when None). Returns the digest each stand-in serves, by spec name.

    ``digest_override``: one digest for every stand-in, or digests by spec name, where
    None means no ``weights_digest`` parameter at all. ``versions``: the versions to serve
    by spec name, instead of the spec's pinned one (for version-pinning tests).
    """
    out = Path(out_dir)
    specs = _triton_specs(catalog, names)
    served: dict[str, str | None] = {}
    for spec in specs:
        triton = spec.triton
        assert triton is not None
        for t in (*triton.inputs, *triton.outputs):
            if t.datatype not in _NUMPY_TYPES:
                raise ValueError(
                    f"spec {spec.name!r}: tensor {t.name!r} is {t.datatype}, which numpy (and "
                    "so a Python-backend stand-in) cannot hold"
                )
        digest: str | None
        if isinstance(digest_override, str):
            digest = digest_override
        elif digest_override is not None and spec.name in digest_override:
            digest = digest_override[spec.name]
        else:
            pin = catalog.expected_digest(spec)
            digest = pin.sha256 if pin is not None else standin_digest(spec)
        served_versions = list((versions or {}).get(spec.name, [triton.model_version]))
        model_dir = out / triton.model_name
        if model_dir.exists():
            shutil.rmtree(model_dir)
        for v in served_versions:
            (model_dir / str(v)).mkdir(parents=True)
            (model_dir / str(v) / "model.py").write_text(
                standin_model_source(triton.model_name, spec.name), encoding="utf-8"
            )
        (model_dir / CONFIG_FILENAME).write_text(
            render_config(spec, digest, platform="python", versions=served_versions),
            encoding="utf-8",
        )
        served[spec.name] = digest
    return served


_ONNX_RUNNER = """\
# Serves model.onnx (beside this file) with ONNX Runtime: written by
# dp_models.testing.triton.write_onnx_repository for a server without an onnxruntime backend.
import os

import numpy as np
import onnxruntime
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def execute(self, requests):
        responses = []
        for request in requests:
            feeds = {
                n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs
            }
            results = self.session.run(self.outputs, feeds)
            tensors = [
                pb_utils.Tensor(n, np.ascontiguousarray(r)) for n, r in zip(self.outputs, results)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
"""


def write_onnx_repository(
    catalog: Catalog,
    root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    names: Iterable[str],
) -> dict[str, str]:
    """Write a Triton model repository at ``out_dir`` serving each of ``names`` (Triton
    specs served from ONNX) from its ``model.onnx`` under ``root`` (an export), run by a
    Python-backend model with ONNX Runtime: the server of these tests has no onnxruntime
    backend. Each serves the file's sha256 as its weights digest (what the lock pins for
    an export). Returns the digests by spec name."""
    out = Path(out_dir)
    served: dict[str, str] = {}
    for spec in _triton_specs(catalog, names):
        triton = spec.triton
        assert triton is not None
        onnx_art = next((a for a in spec.artifacts if a.format == "onnx"), None)
        if onnx_art is None:
            raise ValueError(f"spec {spec.name!r} lists no onnx artifact")
        data = (Path(root) / onnx_art.path).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        model_dir = out / triton.model_name
        if model_dir.exists():
            shutil.rmtree(model_dir)
        version_dir = model_dir / str(triton.model_version)
        version_dir.mkdir(parents=True)
        (version_dir / "model.onnx").write_bytes(data)
        (version_dir / "model.py").write_text(_ONNX_RUNNER, encoding="utf-8")
        (model_dir / CONFIG_FILENAME).write_text(
            render_config(spec, digest, platform="python", versions=[triton.model_version]),
            encoding="utf-8",
        )
        served[spec.name] = digest
    return served


def write_standin_catalog(
    catalog: Catalog, out_dir: str | os.PathLike[str], digests: Mapping[str, str | None]
) -> Path:
    """Copy ``catalog`` (every spec file and its lock) to ``out_dir`` with each spec of
    ``digests`` expecting that digest (``triton.weights_digest``), so that a client bound
    to the copy accepts the stand-ins :func:`write_standin_repository` serves. Returns the
    catalog directory, for ``Catalog.load``."""
    out = Path(out_dir)
    for name, source in catalog.files.items():
        target = out / source.relative_to(catalog.directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = digests.get(name)
        if digest is None:
            shutil.copyfile(source, target)
            continue
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
        data["triton"]["weights_digest"] = digest
        target.write_text(
            "# A stand-in copy written by dp_models.testing.triton.write_standin_catalog.\n"
            + yaml.safe_dump(data, sort_keys=False),
            encoding="utf-8",
        )
    if catalog.lock.path.is_file():
        shutil.copyfile(catalog.lock.path, out / LOCK_FILENAME)
    return out
