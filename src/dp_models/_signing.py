"""Signed locks: a site signs its lock with its own key pair; loads verify it offline.

The signature is an OpenSSF model-signing (OMS) signature of the lock file alone, made
and checked by the ``model-signing`` package (the ``sign`` extra) with a local elliptic
curve key pair: a Sigstore bundle whose DSSE envelope carries an in-toto statement with
the lock's sha256, signed with the private key, no certificate, no transparency log,
nothing on the network. It is written beside the lock as ``catalog.lock.json.sig``, and
verifies with that project's own tool too::

    model_signing verify key catalog.lock.json \\
        --signature catalog.lock.json.sig --public_key lock-key.pub

What is verified is what is used: the lock, the signature and the public key are each read
once (regular files only, bounded), model-signing checks private copies of those bytes,
and the lock a catalog then uses is parsed from the same bytes (:func:`load_signed_lock`),
so a file swapped in between is never trusted. Keys are PEM files on the P-256, P-384 or
P-521 curve (``docs/signing.md`` shows how to make them with openssl).

>>> from dp_models._signing import sign_lock, verify_lock
>>> sign_lock("catalog.lock.json", "lock-key.pem")      # doctest: +SKIP
PosixPath('catalog.lock.json.sig')
>>> verify_lock("catalog.lock.json", "lock-key.pub").key_id  # doctest: +SKIP
'6b5f6065...'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib
import json
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import (
    FileTooLargeError,
    LockError,
    LockSignatureError,
    MissingExtraError,
    NotRegularFileError,
)
from ._io import atomic_write, read_regular
from ._lock import _MAX_LOCK_BYTES, Lock

if TYPE_CHECKING:
    from ._catalog import Catalog

__all__ = [
    "SIGNATURE_SUFFIX",
    "VerifiedLock",
    "check_catalog_lock",
    "load_signed_lock",
    "sign_lock",
    "signature_matches",
    "signature_path",
    "signing_key_id",
    "verify_lock",
]

#: The signature of ``catalog.lock.json`` is ``catalog.lock.json.sig``, beside it.
SIGNATURE_SUFFIX = ".sig"

_MAX_KEY_BYTES = 64 * 1024
_MAX_SIGNATURE_BYTES = 1024 * 1024  # a lock's signature is about 1.5 KB
_CURVES = ("secp256r1", "secp384r1", "secp521r1")  # those OMS (and Sigstore) accept
_SIGN_HINT = "sign it with `dp-models lock --sign PRIVATE_KEY`"


def signature_path(lock_path: str | os.PathLike[str]) -> Path:
    """Where the signature of ``lock_path`` lives: the same name with ``.sig`` appended."""
    path = Path(lock_path)
    return path.with_name(path.name + SIGNATURE_SUFFIX)


@dataclass(frozen=True)
class VerifiedLock:
    """A lock whose signature verified: the files, the key's id, and the verified bytes."""

    path: Path
    signature: Path
    key: Path
    #: sha256 of the public key (SubjectPublicKeyInfo PEM): the key hint OMS records.
    key_id: str
    #: sha256 of the lock's bytes, as signed.
    sha256: str
    data: bytes = field(repr=False)

    def lock(self) -> Lock:
        """The lock parsed from the verified bytes. Raises :class:`LockError`."""
        return Lock.parse(self.data, self.path)


# -- the optional dependencies -------------------------------------------------------------


def _import(module: str) -> Any:
    """A module of the ``sign`` extra; untyped on purpose (the package's API is untyped)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(exc.name or module, extra="sign") from exc


# -- keys ----------------------------------------------------------------------------------


def _read_small(
    path: Path, limit: int, missing: Callable[[], Exception], bad: Callable[[str], Exception]
) -> bytes:
    """The bytes of the regular file ``path`` (at most ``limit``): ``missing()`` when it
    does not exist, ``bad(why)`` when it is not a regular file, too large or unreadable."""
    try:
        return read_regular(path, max_bytes=limit)
    except FileNotFoundError:
        raise missing() from None
    except NotRegularFileError as exc:
        raise bad(f"is {exc.kind}, not a regular file") from None
    except FileTooLargeError:
        raise bad(f"is larger than {limit} bytes") from None
    except OSError as exc:
        raise bad(f"cannot be read ({exc.strerror or exc})") from None


def _read_key(path: Path, what: str, lock: Path | None, signature: Path | None) -> bytes:
    def bad(why: str) -> LockSignatureError:
        return LockSignatureError(
            f"{what} {path} {why}", reason="key", path=lock, signature=signature, key=path
        )

    return _read_small(path, _MAX_KEY_BYTES, lambda: bad("does not exist"), bad)


def _check_curve(key: Any) -> str | None:
    """Why ``key`` cannot sign or verify an OMS signature, or None."""
    ec = importlib.import_module("cryptography.hazmat.primitives.asymmetric.ec")
    kinds = (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)
    if not isinstance(key, kinds):
        return f"is not an elliptic curve key (found {type(key).__name__.lstrip('_')})"
    if key.curve.name not in _CURVES:
        return f"is on curve {key.curve.name}; OMS keys are on P-256, P-384 or P-521"
    return None


def _key_id(public_key: Any) -> str:
    serialization = importlib.import_module("cryptography.hazmat.primitives.serialization")
    pem = public_key.public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    return hashlib.sha256(pem).hexdigest()


def _load_public_key(
    path: Path, lock: Path | None = None, signature: Path | None = None
) -> tuple[bytes, str]:
    """The PEM bytes and key id of the public key at ``path``, checked."""
    serialization = _import("cryptography.hazmat.primitives.serialization")
    raw = _read_key(path, "public key", lock, signature)

    def bad(why: str) -> LockSignatureError:
        return LockSignatureError(
            f"public key {path} {why}", reason="key", path=lock, signature=signature, key=path
        )

    try:
        key = serialization.load_pem_public_key(raw)
    except Exception:  # ValueError, TypeError, UnsupportedAlgorithm: never echo the bytes
        if b"PRIVATE KEY" in raw:
            raise bad(
                "holds a private key; verify with the public one "
                "(`openssl pkey -in KEY.pem -pubout -out KEY.pub`)"
            ) from None
        raise bad("is not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    if (why := _check_curve(key)) is not None:
        raise bad(why)
    return raw, _key_id(key)


def signing_key_id(private_key_path: str | os.PathLike[str]) -> str:
    """Check that ``private_key_path`` is an unencrypted EC private key in PEM that OMS can
    sign with, and return the id of its public key (as :attr:`VerifiedLock.key_id`).
    Raises :class:`LockSignatureError` (reason ``"key"``) before anything is written."""
    path = Path(private_key_path)
    _import("model_signing")
    serialization = _import("cryptography.hazmat.primitives.serialization")
    raw = _read_key(path, "private key", None, None)

    def bad(why: str) -> LockSignatureError:
        return LockSignatureError(f"private key {path} {why}", reason="key", path=None, key=path)

    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except TypeError:  # encrypted, and no password given
        raise bad(
            "is encrypted; dp-models signs with an unencrypted key (keep it on the signing "
            "machine only), e.g. `openssl pkey -in KEY.pem -out PLAIN.pem`"
        ) from None
    except Exception:  # ValueError, UnsupportedAlgorithm: never echo the bytes
        if b"PUBLIC KEY" in raw and b"PRIVATE KEY" not in raw:
            raise bad("holds a public key; sign with the private one") from None
        raise bad("is not a PEM private key (-----BEGIN PRIVATE KEY-----)") from None
    if (why := _check_curve(key)) is not None:
        raise bad(why)
    return _key_id(key.public_key())


# -- the lock and its signature ------------------------------------------------------------


def _read_lock(path: Path, signature: Path, key: Path) -> bytes:
    def missing() -> LockSignatureError:
        return LockSignatureError(
            f"lock {path} does not exist, so there is nothing signed to verify; write it with "
            "`dp-models lock --root ROOT --sign PRIVATE_KEY`",
            reason="no-lock",
            path=path,
            signature=signature,
            key=key,
        )

    return _read_small(
        path, _MAX_LOCK_BYTES, missing, lambda why: LockError(f"lock {path} {why}", path=path)
    )


def _read_signature(path: Path, lock: Path, key: Path) -> bytes:
    def bad(why: str, reason: str = "malformed") -> LockSignatureError:
        return LockSignatureError(why, reason=reason, path=lock, signature=path, key=key)

    return _read_small(
        path,
        _MAX_SIGNATURE_BYTES,
        lambda: bad(f"lock {lock} is not signed: no signature {path}; {_SIGN_HINT}", "unsigned"),
        lambda why: bad(f"signature {path} {why}"),
    )


@dataclass(frozen=True)
class _Claims:
    """What a signature bundle says, read without trusting it (for messages and for the
    final check, once the signature has verified)."""

    key_hint: str | None
    resources: tuple[tuple[str, str, str], ...]  # (name, algorithm, digest hex)


def _claims(data: bytes) -> _Claims | None:
    """The key hint and signed resources of an OMS signature, or None when it is not one."""
    try:
        bundle = json.loads(data)
        material = bundle.get("verificationMaterial") or {}
        hint = (material.get("publicKey") or {}).get("hint")
        payload = base64.b64decode(bundle["dsseEnvelope"]["payload"], validate=True)
        statement = json.loads(payload)
        resources = tuple(
            (str(r["name"]), str(r["algorithm"]), str(r["digest"]))
            for r in statement["predicate"]["resources"]
        )
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, binascii.Error):
        return None
    return _Claims(hint if isinstance(hint, str) and hint else None, resources)


def signature_matches(
    lock_path: str | os.PathLike[str], signature: str | os.PathLike[str] | None = None
) -> bool | None:
    """Whether the signature beside the lock (or ``signature``) names the lock's current
    sha256; None when there is no signature. Not a verification (no key is checked): for
    telling the operator that a rewritten lock needs signing again."""
    lock = Path(lock_path)
    sig = Path(signature) if signature is not None else signature_path(lock)
    try:
        claims = _claims(read_regular(sig, max_bytes=_MAX_SIGNATURE_BYTES))
        data = read_regular(lock, max_bytes=_MAX_LOCK_BYTES)
    except FileNotFoundError:
        return None
    except OSError:  # unreadable, or not a regular file: not a signature of this lock
        return False
    digest = hashlib.sha256(data).hexdigest()
    return claims is not None and claims.resources == ((".", "sha256", digest),)


def sign_lock(
    lock_path: str | os.PathLike[str],
    private_key_path: str | os.PathLike[str],
    *,
    signature: str | os.PathLike[str] | None = None,
) -> Path:
    """Sign the lock at ``lock_path`` with the EC private key (PEM) at ``private_key_path``;
    returns the signature's path (``signature``, else ``<lock>.sig``).

    The signature is written atomically: on any failure the previous one (if any) is left
    as it was and nothing partial appears. A lock dp_models would refuse to read is not
    signed (:class:`LockError`). Raises :class:`LockSignatureError` for an unusable key or
    a missing lock, :class:`MissingExtraError` without the ``sign`` extra."""
    lock = Path(lock_path)
    key = Path(private_key_path)
    sig = Path(signature) if signature is not None else signature_path(lock)
    signing = _import("model_signing.signing")
    signing_key_id(key)
    data = _read_lock(lock, sig, key)
    Lock.parse(data, lock)
    with tempfile.TemporaryDirectory(prefix="dp_models-sign-") as private:
        model = Path(private) / lock.name
        model.write_bytes(data)
        signed = Path(private) / sig.name  # model-signing writes it; it is moved in whole
        signing.Config().use_elliptic_key_signer(private_key=key).sign(model, signed)
        mode = stat.S_IMODE(os.stat(lock).st_mode)  # readable as the lock is
        atomic_write(sig, read_regular(signed, max_bytes=_MAX_SIGNATURE_BYTES), mode=mode)
    return sig


def verify_lock(
    lock_path: str | os.PathLike[str],
    public_key_path: str | os.PathLike[str],
    signature: str | os.PathLike[str] | None = None,
) -> VerifiedLock:
    """Verify the signature (``signature``, else ``<lock>.sig``) of the lock at
    ``lock_path`` against the EC public key (PEM) at ``public_key_path``, offline.

    Raises :class:`LockSignatureError` whose ``reason`` says what is wrong: ``"key"``,
    ``"no-lock"``, ``"unsigned"``, ``"malformed"``, ``"wrong-key"``, ``"invalid"`` or
    ``"modified"`` (the lock was edited after it was signed);
    :class:`MissingExtraError` without the ``sign`` extra."""
    lock = Path(lock_path)
    key = Path(public_key_path)
    sig = Path(signature) if signature is not None else signature_path(lock)
    verifying = _import("model_signing.verifying")
    invalid_signature = _import("cryptography.exceptions").InvalidSignature

    def refuse(why: str, reason: str) -> LockSignatureError:
        return LockSignatureError(why, reason=reason, path=lock, signature=sig, key=key)

    key_pem, key_id = _load_public_key(key, lock, sig)
    data = _read_lock(lock, sig, key)
    sig_data = _read_signature(sig, lock, key)
    digest = hashlib.sha256(data).hexdigest()
    claims = _claims(sig_data)
    if claims is None:
        raise refuse(
            f"signature {sig} is not an OMS signature (a Sigstore bundle with a DSSE "
            f"envelope) that dp_models can read; {_SIGN_HINT}",
            "malformed",
        )
    if claims.key_hint is None:
        raise refuse(
            f"signature {sig} does not name the public key it was made with (an older "
            f"model-signing format); {_SIGN_HINT}",
            "malformed",
        )
    if claims.key_hint.lower() != key_id:
        raise refuse(
            f"lock {lock} was signed with another key (key sha256 {claims.key_hint[:16]}...), "
            f"not with {key} (sha256 {key_id[:16]}...); verify with the key it was signed "
            f"with, or {_SIGN_HINT}",
            "wrong-key",
        )
    with tempfile.TemporaryDirectory(prefix="dp_models-verify-") as private:
        copies = Path(private)
        (copies / "key.pub").write_bytes(key_pem)
        (copies / "lock.sig").write_bytes(sig_data)
        (copies / lock.name).write_bytes(data)
        try:
            verifying.Config().use_elliptic_key_verifier(public_key=copies / "key.pub").verify(
                copies / lock.name, copies / "lock.sig"
            )
        except Exception as exc:
            if isinstance(exc, invalid_signature):
                raise refuse(
                    f"signature {sig} does not verify with {key}: it was altered after "
                    f"signing, or made with another key; {_SIGN_HINT}",
                    "invalid",
                ) from None
            if [d for _, _, d in claims.resources] != [digest]:
                raise refuse(
                    f"lock {lock} was edited after it was signed (sha256 {digest[:16]}..., "
                    f"not the signed one); review the change, then {_SIGN_HINT}",
                    "modified",
                ) from None
            detail = str(exc).replace(private, "")
            raise refuse(
                f"signature {sig} does not verify with {key}: {detail}", "invalid"
            ) from None
    # model-signing compared its own manifest; dp_models also requires that the signature
    # covers exactly this one file, with this sha256 (a signed manifest that ignores the
    # file, or names others, is refused).
    if claims.resources != ((".", "sha256", digest),):
        raise refuse(
            f"signature {sig} does not sign exactly this one file by its sha256 (it lists "
            f"{len(claims.resources)} resource(s): a directory's signature, or one made to "
            f"ignore the file); {_SIGN_HINT}",
            "invalid",
        )
    return VerifiedLock(lock, sig, key, key_id, digest, data)


def load_signed_lock(
    lock_path: str | os.PathLike[str],
    public_key_path: str | os.PathLike[str],
    signature: str | os.PathLike[str] | None = None,
) -> Lock:
    """The lock at ``lock_path``, parsed from the very bytes whose signature verified
    (:func:`verify_lock`); a missing lock is refused, not read as empty."""
    return verify_lock(lock_path, public_key_path, signature).lock()


def check_catalog_lock(
    catalog: Catalog, lock_key: str | os.PathLike[str] | None = None
) -> VerifiedLock | None:
    """Refuse ``catalog`` unless its lock file is signed by ``lock_key`` (None: nothing to
    check, None returned; the key of the settings, ``Settings.lock_key``, is what a
    ModelManager passes) and holds exactly the pins the catalog uses: for a catalog loaded
    before the key was known."""
    if lock_key is None:
        return None
    key = Path(lock_key)
    verified = verify_lock(catalog.lock.path, key)
    if dict(verified.lock().artifacts) != dict(catalog.lock.artifacts):
        raise LockSignatureError(
            f"the catalog's lock differs from the signed lock file {catalog.lock.path}; load "
            "the catalog again (Catalog.load(lock_key=...)) to use the signed pins",
            reason="modified",
            path=catalog.lock.path,
            signature=verified.signature,
            key=key,
        )
    return verified
