"""Passwords (argon2, a policy of the NIST SP 800-63B kind), API tokens (random, kept as SHA-256),
secrets encrypted at rest and keyed MACs."""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
from importlib import resources
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

TOKEN_PREFIX = "lms_"  # noqa: S105 - a label, not a secret
_hasher = PasswordHasher()


PASSWORD_MIN_LENGTH = 12
PASSWORD_MAX_LENGTH = 128
TOO_COMMON = "this password is too common; choose another"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password, with the real parameters: checked against when there is no
    real hash, so that the answer takes as long as for a real login."""
    return _hasher.hash(secrets.token_urlsafe(16))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches. ``None`` (no such login, or one without a password) is
    never a match, but still costs one argon2 verification: the time taken does not reveal
    whether an email has a login."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common and breached passwords, case-folded (see data/README.md)."""
    text = resources.files("lmsync").joinpath("data/common-passwords.txt").read_text("utf-8")
    return frozenset(line.casefold() for line in text.splitlines() if line)


def password_problem(password: str, *, email: str = "") -> str | None:
    """What is wrong with a new password, or None when it may be used.

    The rules of NIST SP 800-63B: a minimum length (12 here: the logins guard HR data) and a
    maximum, not only spaces, not a known common or breached password, not the login's own
    name; and no composition rules (no "one digit, one symbol"), which only make passwords
    harder to remember without making them harder to guess.
    """
    if len(password) < PASSWORD_MIN_LENGTH:
        return f"must be at least {PASSWORD_MIN_LENGTH} characters long"
    if len(password) > PASSWORD_MAX_LENGTH:
        return f"must be at most {PASSWORD_MAX_LENGTH} characters long"
    if not password.strip():
        return "must not be only spaces"
    folded = password.casefold()
    local_part = email.rpartition("@")[0].casefold()
    if len(local_part) >= 3 and local_part in folded:
        return "must not contain the email's name (the part before the @)"
    listed = common_passwords()
    if folded in listed or "".join(folded.split()) in listed:
        return TOO_COMMON
    return None


def new_api_token() -> tuple[str, str]:
    """A fresh token and the hash stored for it. The token itself is shown once and never kept.

    Tokens carry 256 random bits, so a fast hash is enough (no dictionary to attack) and lets the
    server find the token by its hash in one indexed lookup.
    """
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_api_token(token)


def hash_api_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class SecretBox:
    """Encrypts the LMS secrets kept in the database with a key that is not in the database."""

    def __init__(self, key: str | bytes) -> None:
        self._fernet = Fernet(key)
        raw = key.encode() if isinstance(key, str) else key
        # A key of its own for MACs, derived from the Fernet key (never used as-is twice).
        self._mac_key = hmac.new(raw, b"lmsync mac key", hashlib.sha256).digest()

    @classmethod
    def from_settings(cls, secret_key: str | None, data_dir: Path) -> SecretBox:
        """The configured key, else one generated once into ``data_dir/secret.key`` (mode 0600)."""
        if secret_key:
            return cls(secret_key)
        path = data_dir / "secret.key"
        if not path.exists():
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
        elif path.stat().st_mode & 0o077:
            path.chmod(0o600)  # a key copied in with a wider mode
        return cls(path.read_bytes().strip())

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def mac(self, purpose: str, message: str) -> str:
        """A keyed MAC of ``message`` for one ``purpose`` (e.g. the sign-in form's CSRF token)."""
        data = purpose.encode() + b"\0" + message.encode()
        return hmac.new(self._mac_key, data, hashlib.sha256).hexdigest()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("secret cannot be decrypted with this key") from exc
