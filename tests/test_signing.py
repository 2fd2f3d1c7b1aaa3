"""Signed locks: OMS signatures made and checked offline with a local EC key pair (keys are
generated here), refused when anything is off, and interchangeable with model-signing's
own command line."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from dp_models import ModelManager
from dp_models._catalog import Catalog
from dp_models._cli import main
from dp_models._errors import LockError, LockSignatureError, MissingExtraError
from dp_models._lock import Lock, LockEntry
from dp_models._signing import (
    check_catalog_lock,
    load_signed_lock,
    sign_lock,
    signature_path,
    verify_lock,
)

from .conftest import SpecWriter, inprocess_spec, make_file, sha256


def write_key_pair(directory: Path, name: str = "lock-key") -> tuple[Path, Path]:
    """A fresh EC P-256 key pair as PEM files: (private, public)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = directory / f"{name}.pem"
    public = directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def write_lock(path: Path, digest: str = sha256(b"m")) -> Path:
    Lock(path, {"m.pt": LockEntry("file", digest, 1)}).write()
    return path


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "keys").mkdir()
    return write_key_pair(tmp_path / "keys")


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    return write_lock(tmp_path / "site" / "catalog.lock.json")


def signed_claims(sig: Path) -> dict[str, object]:
    bundle = json.loads(sig.read_bytes())
    return dict(json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"])))


# -- sign and verify -----------------------------------------------------------------------


def test_round_trip(lock: Path, keys: tuple[Path, Path]) -> None:
    private, public = keys
    sig = sign_lock(lock, private)
    assert sig == lock.parent / "catalog.lock.json.sig" == signature_path(lock)
    verified = verify_lock(lock, public)
    assert verified.path == lock and verified.signature == sig and verified.key == public
    assert verified.sha256 == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert verified.key_id == hashlib.sha256(public.read_bytes()).hexdigest()
    assert load_signed_lock(lock, public).artifacts == Lock.read(lock).artifacts
    assert "data" not in repr(verified)
    # the OMS statement: one resource, the file itself, by its sha256
    predicate = signed_claims(sig)["predicate"]
    assert isinstance(predicate, dict)
    assert predicate["resources"] == [
        {"name": ".", "algorithm": "sha256", "digest": verified.sha256}
    ]


def test_signature_elsewhere_and_lock_renamed(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """The lock's name is not part of what is signed: a site may keep it under any name."""
    private, public = keys
    lock = write_lock(tmp_path / "a.json")
    sig = sign_lock(lock, private, signature=tmp_path / "elsewhere.sig")
    moved = lock.rename(tmp_path / "site.lock.json")
    assert verify_lock(moved, public, sig).signature == sig


@pytest.mark.adversarial
@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda p: write_lock(p, sha256(b"other")), id="digest-changed"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes() + b" "), id="whitespace"),
        pytest.param(lambda p: write_lock(p).write_text("{}"), id="emptied"),
    ],
)
def test_lock_edited_after_signing_is_refused(
    lock: Path, keys: tuple[Path, Path], edit: object
) -> None:
    private, public = keys
    sign_lock(lock, private)
    edit(lock)  # type: ignore[operator]
    with pytest.raises(LockSignatureError, match="edited after it was signed") as info:
        verify_lock(lock, public)
    assert info.value.reason == "modified"
    assert info.value.path == lock and info.value.key == public
    assert isinstance(info.value, LockError) and isinstance(info.value, ValueError)
    with pytest.raises(LockSignatureError):
        load_signed_lock(lock, public)


@pytest.mark.adversarial
def test_wrong_key_is_refused(lock: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    private, _ = keys
    _, other_public = write_key_pair(tmp_path, "other")
    sign_lock(lock, private)
    with pytest.raises(LockSignatureError, match="signed with another key") as info:
        verify_lock(lock, other_public)
    assert info.value.reason == "wrong-key"
    assert info.value.signature == signature_path(lock)


@pytest.mark.adversarial
def test_signature_with_a_forged_key_hint_is_refused(
    lock: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Signed with an attacker's key, the bundle claiming to be from the site's key."""
    _, public = keys
    attacker, _ = write_key_pair(tmp_path, "attacker")
    sig = sign_lock(lock, attacker)
    bundle = json.loads(sig.read_bytes())
    bundle["verificationMaterial"]["publicKey"]["hint"] = hashlib.sha256(
        public.read_bytes()
    ).hexdigest()
    sig.write_text(json.dumps(bundle))
    with pytest.raises(LockSignatureError, match="does not verify") as info:
        verify_lock(lock, public)
    assert info.value.reason == "invalid"


@pytest.mark.adversarial
def test_edited_lock_with_payload_rewritten_to_match_is_refused(
    lock: Path, keys: tuple[Path, Path]
) -> None:
    """The attacker edits the lock and rewrites the signed statement's digest to match;
    the signature over the statement no longer verifies."""
    private, public = keys
    sig = sign_lock(lock, private)
    write_lock(lock, sha256(b"hostile"))
    bundle = json.loads(sig.read_bytes())
    statement = signed_claims(sig)
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    statement["predicate"]["resources"][0]["digest"] = digest  # type: ignore[index]
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    sig.write_text(json.dumps(bundle))
    with pytest.raises(LockSignatureError, match="does not verify") as info:
        verify_lock(lock, public)
    assert info.value.reason == "invalid"


@pytest.mark.adversarial
def test_signature_that_ignores_the_file_is_refused(lock: Path, keys: tuple[Path, Path]) -> None:
    """model-signing itself accepts a signature whose manifest ignores the file (it then
    verifies any content); dp_models requires the signature to name this file's sha256."""
    from model_signing import hashing, signing, verifying

    private, public = keys
    sig = signature_path(lock)
    signing.Config().use_elliptic_key_signer(private_key=private).set_hashing_config(
        hashing.Config().set_ignored_paths(paths=["."])
    ).sign(lock, sig)
    write_lock(lock, sha256(b"hostile"))
    verifying.Config().use_elliptic_key_verifier(public_key=public).verify(lock, sig)
    with pytest.raises(LockSignatureError, match="does not sign exactly this one file") as info:
        verify_lock(lock, public)
    assert info.value.reason == "invalid"


@pytest.mark.adversarial
def test_unsigned_and_missing_lock_are_refused(lock: Path, keys: tuple[Path, Path]) -> None:
    _, public = keys
    with pytest.raises(LockSignatureError, match=r"is not signed.*lock --sign") as info:
        verify_lock(lock, public)
    assert info.value.reason == "unsigned"
    with pytest.raises(LockSignatureError, match="does not exist") as info:
        verify_lock(lock.with_name("absent.json"), public)
    assert info.value.reason == "no-lock"


@pytest.mark.adversarial
@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'{"mediaType": "x"}', id="no-envelope"),
        pytest.param(b'{"dsseEnvelope": {"payload": "%%%"}}', id="bad-base64"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deeply-nested"),
    ],
)
def test_malformed_signature_is_refused(
    lock: Path, keys: tuple[Path, Path], content: bytes
) -> None:
    _, public = keys
    signature_path(lock).write_bytes(content)
    with pytest.raises(LockSignatureError, match="not an OMS signature") as info:
        verify_lock(lock, public)
    assert info.value.reason == "malformed"


@pytest.mark.adversarial
def test_signature_without_key_hint_is_refused(lock: Path, keys: tuple[Path, Path]) -> None:
    private, public = keys
    sig = sign_lock(lock, private)
    bundle = json.loads(sig.read_bytes())
    del bundle["verificationMaterial"]["publicKey"]["hint"]
    sig.write_text(json.dumps(bundle))
    with pytest.raises(LockSignatureError, match="does not name the public key") as info:
        verify_lock(lock, public)
    assert info.value.reason == "malformed"


@pytest.mark.adversarial
def test_fifo_as_signature_or_key_does_not_hang(lock: Path, keys: tuple[Path, Path]) -> None:
    _, public = keys
    os.mkfifo(signature_path(lock))
    with pytest.raises(LockSignatureError, match="FIFO") as info:
        verify_lock(lock, public)
    assert info.value.reason == "malformed"
    fifo_key = lock.parent / "key.fifo"
    os.mkfifo(fifo_key)
    with pytest.raises(LockSignatureError, match="FIFO") as info:
        verify_lock(lock, fifo_key)
    assert info.value.reason == "key"
    with pytest.raises(LockSignatureError, match="FIFO"):
        sign_lock(lock, fifo_key)


def _rsa_public(tmp_path: Path) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        pytest.param(lambda d, priv: b"garbage", "not a PEM public key", id="garbage"),
        pytest.param(lambda d, priv: priv.read_bytes(), "holds a private key", id="private"),
        pytest.param(lambda d, priv: _rsa_public(d), "not an elliptic curve key", id="rsa"),
        pytest.param(
            lambda d, priv: (
                ed25519.Ed25519PrivateKey.generate()
                .public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            ),
            "not an elliptic curve key",
            id="ed25519",
        ),
        pytest.param(
            lambda d, priv: (
                ec.generate_private_key(ec.SECP256K1())
                .public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            ),
            "curve secp256k1",
            id="secp256k1",
        ),
        pytest.param(None, "does not exist", id="missing"),
    ],
)
def test_bad_public_key_is_refused(
    lock: Path, keys: tuple[Path, Path], tmp_path: Path, make: object, phrase: str
) -> None:
    private, _ = keys
    sign_lock(lock, private)
    bad = tmp_path / "bad.pub"
    if make is not None:
        bad.write_bytes(make(tmp_path, private))  # type: ignore[operator]
    with pytest.raises(LockSignatureError, match=phrase) as info:
        verify_lock(lock, bad)
    assert info.value.reason == "key" and info.value.key == bad
    if bad.exists():  # the key's bytes are never echoed
        body = [line for line in bad.read_text().splitlines() if not line.startswith("-----")]
        assert not any(line in str(info.value) for line in body)


@pytest.mark.adversarial
def test_bad_private_key_writes_nothing(
    lock: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    _, public = keys
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret-passphrase"),
        )
    )
    for key, phrase in ((encrypted, "is encrypted"), (public, "holds a public key")):
        with pytest.raises(LockSignatureError, match=phrase) as info:
            sign_lock(lock, key)
        assert info.value.reason == "key"
        assert "secret-passphrase" not in str(info.value)
    assert sorted(p.name for p in lock.parent.iterdir()) == ["catalog.lock.json"]


def test_malformed_lock_is_not_signed(lock: Path, keys: tuple[Path, Path]) -> None:
    lock.write_text('{"format": 1}')
    with pytest.raises(LockError, match="malformed"):
        sign_lock(lock, keys[0])
    assert not signature_path(lock).exists()
    with pytest.raises(LockSignatureError, match="does not exist") as info:
        sign_lock(lock.with_name("absent.json"), keys[0])
    assert info.value.reason == "no-lock"


@pytest.mark.adversarial
def test_signing_failure_leaves_the_old_signature(
    lock: Path, keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_signing import signing

    private, public = keys
    sig = sign_lock(lock, private)
    before = sig.read_bytes()

    def half_written(self: object, model_path: object, signature_path: object) -> None:
        Path(str(signature_path)).write_text('{"partial')
        raise OSError("disk full")

    monkeypatch.setattr(signing.Config, "sign", half_written)
    with pytest.raises(OSError, match="disk full"):
        sign_lock(lock, private)
    assert sig.read_bytes() == before
    assert sorted(p.name for p in lock.parent.iterdir()) == [lock.name, sig.name]
    assert verify_lock(lock, public).signature == sig


def test_missing_extra(
    lock: Path, keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "model_signing.signing", None)
    monkeypatch.setitem(sys.modules, "model_signing.verifying", None)
    with pytest.raises(MissingExtraError, match=r"dp-models\[sign\]") as info:
        sign_lock(lock, keys[0])
    assert info.value.extra == "sign"
    with pytest.raises(MissingExtraError, match=r"dp-models\[sign\]"):
        verify_lock(lock, keys[1])


@pytest.mark.adversarial
def test_lock_swapped_after_verification_is_not_used(
    lock: Path, keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock renamed over the verified one right after verification: the pins used are
    those of the bytes that verified, never a second read of the path."""
    from model_signing import verifying

    private, public = keys
    sign_lock(lock, private)
    signed = Lock.read(lock).artifacts
    real_verify = verifying.Config.verify

    def verify_then_swap(self: object, model_path: object, signature_path: object) -> None:
        real_verify(self, model_path, signature_path)
        hostile = write_lock(lock.with_name("hostile.json"), sha256(b"hostile"))
        os.replace(hostile, lock)

    monkeypatch.setattr(verifying.Config, "verify", verify_then_swap)
    assert load_signed_lock(lock, public).artifacts == signed
    assert Lock.read(lock).artifacts != signed  # the swap did happen


# -- catalog and manager -------------------------------------------------------------------


@pytest.fixture
def site(
    catalog_dir: Path, models_root: Path, write_spec: SpecWriter, keys: tuple[Path, Path]
) -> tuple[Path, Path]:
    """A catalog with one spec pinned by a signed lock; (catalog, root)."""
    write_spec("m", inprocess_spec("m", "- {path: m.pt, format: pt}"))
    make_file(models_root / "m.pt", b"m")
    write_lock(catalog_dir / "catalog.lock.json")
    sign_lock(catalog_dir / "catalog.lock.json", keys[0])
    return catalog_dir, models_root


def test_manager_accepts_a_signed_lock(site: tuple[Path, Path], keys: tuple[Path, Path]) -> None:
    catalog, root = site
    mm = ModelManager(root, catalog, lock_key=keys[1])
    pin = mm.catalog.pin(mm.catalog["m"].artifacts[0])
    assert pin is not None and pin.sha256 == sha256(b"m") and pin.source == "lock"
    # a catalog loaded beforehand is checked too
    assert ModelManager(root, Catalog.load(catalog), lock_key=keys[1]).catalog["m"]


@pytest.mark.adversarial
def test_manager_refuses_an_unsigned_lock(
    site: tuple[Path, Path], keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog, root = site
    signature_path(catalog / "catalog.lock.json").unlink()
    with pytest.raises(LockSignatureError, match="is not signed") as info:
        ModelManager(root, catalog, lock_key=keys[1])
    assert info.value.reason == "unsigned"
    monkeypatch.setenv("DP_MODELS_LOCK_KEY", str(keys[1]))
    with pytest.raises(LockSignatureError, match="is not signed"):
        ModelManager(root, catalog)
    with pytest.raises(LockSignatureError, match="is not signed"):
        ModelManager(root, Catalog.load(catalog, lock_key=None, check_lock=False))
    with pytest.raises(LockSignatureError, match="is not signed"):
        Catalog.load(catalog)


@pytest.mark.adversarial
def test_manager_refuses_a_wrongly_signed_or_edited_lock(
    site: tuple[Path, Path], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    catalog, root = site
    _, other = write_key_pair(tmp_path, "other")
    with pytest.raises(LockSignatureError, match="another key") as info:
        ModelManager(root, catalog, lock_key=other)
    assert info.value.reason == "wrong-key"
    write_lock(catalog / "catalog.lock.json", sha256(b"hostile"))
    with pytest.raises(LockSignatureError, match="edited after it was signed") as info:
        ModelManager(root, catalog, lock_key=keys[1])
    assert info.value.reason == "modified"


@pytest.mark.adversarial
def test_preloaded_catalog_must_hold_the_signed_pins(
    site: tuple[Path, Path], keys: tuple[Path, Path]
) -> None:
    catalog, root = site
    loaded = Catalog.load(catalog)
    hostile = Lock(loaded.lock.path, {"m.pt": LockEntry("file", sha256(b"hostile"), 7)})
    forged = Catalog(dict(loaded), loaded.files, loaded.directory, hostile)
    with pytest.raises(LockSignatureError, match="differs from the signed lock") as info:
        ModelManager(root, forged, lock_key=keys[1])
    assert info.value.reason == "modified"
    assert check_catalog_lock(loaded) is None  # no key given nor set: nothing checked


def test_no_key_means_no_check(site: tuple[Path, Path]) -> None:
    catalog, root = site
    signature_path(catalog / "catalog.lock.json").unlink()
    assert ModelManager(root, catalog).catalog["m"]


# -- command line --------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_lock_sign_and_verify_lock(
    capsys: pytest.CaptureFixture[str],
    catalog_dir: Path,
    models_root: Path,
    write_spec: SpecWriter,
    keys: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private, public = keys
    write_spec("m", inprocess_spec("m", "- {path: m.pt, format: pt}"))
    make_file(models_root / "m.pt", b"m")
    where = ("--catalog", str(catalog_dir))
    code, out, _ = run(capsys, "lock", *where, "--root", str(models_root), "--sign", str(private))
    lock = catalog_dir / "catalog.lock.json"
    assert code == 0 and f"signed {lock}: {lock}.sig" in out
    code, out, _ = run(capsys, "verify-lock", *where, "--key", str(public))
    assert code == 0 and "verified: signed with this key" in out and str(lock) in out
    code, out, _ = run(capsys, "verify-lock", *where, "--key", str(public), "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and data["lock"] == str(lock)
    assert data["lock_sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    # with the key set, every command refuses a lock that does not verify
    monkeypatch.setenv("DP_MODELS_LOCK_KEY", str(public))
    assert run(capsys, "validate", *where)[0] == 0
    write_lock(lock, sha256(b"hostile"))
    code, _, err = run(capsys, "validate", *where)
    assert code == 1 and "edited after it was signed" in err
    code, out, _ = run(capsys, "verify-lock", *where, "--json")
    data = json.loads(out)
    assert code == 1 and data["ok"] is False and data["reason"] == "modified"
    code, out, err = run(capsys, "verify-lock", *where)
    assert code == 1 and out == "" and "edited after it was signed" in err
    # rewriting the lock without --sign says the signature is stale
    monkeypatch.delenv("DP_MODELS_LOCK_KEY")
    write_lock(lock)
    make_file(models_root / "m.pt", b"changed")
    code, out, _ = run(capsys, "lock", *where, "--root", str(models_root))
    assert code == 0 and "was made for another version of the lock" in out


def test_cli_lock_sign_bad_key_writes_nothing(
    capsys: pytest.CaptureFixture[str],
    catalog_dir: Path,
    models_root: Path,
    write_spec: SpecWriter,
    tmp_path: Path,
) -> None:
    write_spec("m", inprocess_spec("m", "- {path: m.pt, format: pt}"))
    make_file(models_root / "m.pt", b"m")
    bad = make_file(tmp_path / "bad.pem", b"garbage")
    argv = ("lock", "--catalog", str(catalog_dir), "--root", str(models_root), "--sign", str(bad))
    code, _, err = run(capsys, *argv)
    assert code == 1 and "is not a PEM private key" in err
    assert not (catalog_dir / "catalog.lock.json").exists()


def test_cli_usage(capsys: pytest.CaptureFixture[str], lock: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["lock", "--check", "--sign", "key.pem"])
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    code, _, err = run(capsys, "verify-lock", "--lock", str(lock))
    assert code == 1 and "pass --key PUB, or set DP_MODELS_LOCK_KEY" in err


def test_env_shows_the_lock_key(
    capsys: pytest.CaptureFixture[str], keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(capsys, "env", "--json")
    assert json.loads(out)["settings"]["lock_key"].startswith("(none")
    monkeypatch.setenv("DP_MODELS_LOCK_KEY", str(keys[1]))
    code, out, _ = run(capsys, "env", "--json")
    data = json.loads(out)
    assert code == 0 and data["settings"]["lock_key"] == str(keys[1])
    assert data["environment"]["DP_MODELS_LOCK_KEY"] == str(keys[1])


# -- model-signing's own command line, offline ---------------------------------------------

#: Runs model-signing's command line with every network operation refused (an audit hook
#: raises before any connection or name lookup), so the test proves it needs no network.
OFFLINE_MODEL_SIGNING = textwrap.dedent(
    """
    import runpy, sys

    def deny(event, args):
        if event in {
            "socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
            "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr",
            "socket.getnameinfo",
        }:
            sys.stderr.write(f"NETWORK ATTEMPT: {event} {args}\\n")
            raise RuntimeError(f"network refused: {event}")

    sys.addaudithook(deny)
    sys.argv = ["model_signing", *sys.argv[1:]]
    runpy.run_module("model_signing", run_name="__main__", alter_sys=True)
    """
)


def model_signing_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", OFFLINE_MODEL_SIGNING, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_model_signing_cli_verifies_our_signature(lock: Path, keys: tuple[Path, Path]) -> None:
    private, public = keys
    sig = sign_lock(lock, private)
    done = model_signing_cli(
        "verify", "key", str(lock), "--signature", str(sig), "--public_key", str(public)
    )
    assert done.returncode == 0, done.stderr
    assert "Verification succeeded" in done.stdout and "NETWORK" not in done.stderr
    # and its verdict on an edited lock agrees with ours
    write_lock(lock, sha256(b"hostile"))
    done = model_signing_cli(
        "verify", "key", str(lock), "--signature", str(sig), "--public_key", str(public)
    )
    assert done.returncode != 0 and "NETWORK" not in done.stderr


def test_we_verify_the_model_signing_cli_signature(lock: Path, keys: tuple[Path, Path]) -> None:
    private, public = keys
    sig = signature_path(lock)
    done = model_signing_cli(
        "sign", "key", str(lock), "--signature", str(sig), "--private_key", str(private)
    )
    assert done.returncode == 0, done.stderr
    assert "Signing succeeded" in done.stdout and "NETWORK" not in done.stderr
    assert verify_lock(lock, public).sha256 == hashlib.sha256(lock.read_bytes()).hexdigest()


def test_offline_wrapper_does_refuse_the_network() -> None:
    """The wrapper above would notice a connection (to a loopback port nobody serves)."""
    code = "import socket; socket.socket().connect(('127.0.0.1', 9))"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            OFFLINE_MODEL_SIGNING.replace(
                'runpy.run_module("model_signing", run_name="__main__", alter_sys=True)', code
            ),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "NETWORK ATTEMPT: socket.connect" in done.stderr
