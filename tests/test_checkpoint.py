"""The safe checkpoint readers (dp_models.loaders._checkpoint): pickles of every protocol
through torch's weights-only unpickler, TorchScript archives as data."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dp_models._errors import UnsupportedPickleError
from dp_models.loaders._checkpoint import read_pickle, read_torchscript_state_dict, to_protocol_2

from .fakeroots import REBINDS_COUNTER_UPDATE, RunsCode

PROTOCOLS = [2, 3, 4, 5]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(min_size=1, max_size=20)  # torch pickles b"" as builtins.bytes(), refused
)
tensors = st.lists(st.floats(-1e6, 1e6, width=32), min_size=0, max_size=6).map(
    lambda xs: torch.tensor(xs, dtype=torch.float32)
)
checkpoints = st.recursive(
    scalars | tensors,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and a == b


def saved(obj: Any, protocol: int) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, pickle_protocol=protocol)
    return buf.getvalue()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(obj=checkpoints)
def test_every_protocol_reads_back_what_was_saved(protocol: int, obj: Any, tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    path.write_bytes(saved({"state_dict": obj, "shared": [obj, obj]}, protocol))
    got = read_pickle(path)
    assert same(got["state_dict"], obj)
    assert same(got["shared"], [obj, obj])


@pytest.mark.adversarial
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_payload_is_refused_in_every_protocol(protocol: int, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "ckpt.pt"
    path.write_bytes(saved({"w": RunsCode(marker)}, protocol))
    with pytest.raises(pickle.UnpicklingError, match=r"GLOBAL posix\.system"):
        read_pickle(path)
    assert not marker.exists()


@pytest.mark.adversarial
def test_build_on_a_class_is_refused_not_applied() -> None:
    import collections

    original = collections.Counter.update
    translated = to_protocol_2(io.BytesIO(REBINDS_COUNTER_UPDATE))
    assert translated.startswith(b"\x80\x02") and b"ccollections\nCounter\n" in translated
    from torch import _weights_only_unpickler as wou

    with pytest.raises(pickle.UnpicklingError, match="Can only build"):
        wou.Unpickler(io.BytesIO(translated)).load()  # type: ignore[no-untyped-call]
    assert collections.Counter.update is original


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("opcodes", "name"),
    [
        (b"\x80\x04\x8c\x01a\x8c\x01b\x92.", "NEWOBJ_EX"),
        (b"\x80\x05\x97.", "NEXT_BUFFER"),
        (b"\x80\x02\x8b\x01\x00\x00\x00\x01.", "LONG4"),
        (b"\x80\x04\x93.", "STACK_GLOBAL without two names"),
    ],
)
def test_what_has_no_protocol_2_form_is_a_typed_refusal(opcodes: bytes, name: str) -> None:
    with pytest.raises(UnsupportedPickleError, match=name.split()[0]):
        to_protocol_2(io.BytesIO(opcodes))


@pytest.mark.adversarial
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_any_bytes_translate_or_are_refused(data: bytes) -> None:
    try:
        out = to_protocol_2(io.BytesIO(data))
    except UnsupportedPickleError:
        return
    assert out.startswith(b"\x80\x02") or not out.startswith(b"\x80")


@pytest.mark.adversarial
@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=1, max_size=300))
def test_any_bytes_as_a_torchscript_archive_are_refused_typed(data: bytes) -> None:
    with pytest.raises(pickle.UnpicklingError):  # UnsupportedPickleError is one
        read_torchscript_state_dict(io.BytesIO(data))


def test_a_scripted_module_reads_as_its_state_dict(tmp_path: Path) -> None:
    import warnings

    from dp_models.testing.nets import TinyNet

    class Two(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = TinyNet()
            self.b = torch.nn.Sequential(TinyNet(3, 2), torch.nn.ReLU())
            self.register_buffer("scale", torch.full((2,), 3.0))
            self.not_state = torch.zeros(1)  # a tensor attribute, not a parameter or buffer

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x)) * self.scale + self.not_state

    path = tmp_path / "two.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch deprecates TorchScript
        scripted = torch.jit.script(Two())
        torch.jit.save(scripted, str(path))
    with open(path, "rb") as f:
        state = read_torchscript_state_dict(f)
    reference = scripted.state_dict()
    assert sorted(state) == sorted(reference) and "not_state" not in state
    assert all(torch.equal(state[k], reference[k]) for k in reference)
