"""Passwords (scrypt), signed session cookies and the login rate limit: pure, no web framework."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

# scrypt cost: 16 MiB of memory and about 50 ms on a Raspberry Pi 4 per login
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
COOKIE = "bmsgate_session"


class PasswordError(ValueError):
    """A password that cannot be used; the message says why."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_new_password(password: str) -> str:
    """``password`` if it is acceptable as a new password."""
    if len(password) < MIN_PASSWORD:
        raise PasswordError(f"the password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise PasswordError(f"the password may have at most {MAX_PASSWORD} characters")
    return password


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` of ``password`` (hashlib.scrypt, 16-byte random salt)."""
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 << 20, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def is_hash(text: str) -> bool:
    """Whether ``text`` looks like a hash made by hash_password."""
    parts = text.split("$")
    return len(parts) == 6 and parts[0] == "scrypt" and all(p.isdigit() for p in parts[1:4])


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded``, in constant time; False for a malformed hash."""
    if not is_hash(encoded) or len(password) > MAX_PASSWORD:
        return False
    _, n, r, p, salt, want = encoded.split("$")
    try:
        got = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
            maxmem=256 << 20, dklen=len(_unb64(want)),
        )  # fmt: skip
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got, _unb64(want))


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by the owner only, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


@dataclass
class Sessions:
    """Stateless sessions: ``issued.nonce.mac``, the MAC keyed by a secret and the password hash.

    Changing the password ends every session; a logout revokes its nonce until the process ends.
    """

    key: bytes
    lifetime: float  # [s]
    revoked: set[str] = field(default_factory=set)

    def _mac(self, issued: int, nonce: str, password_hash: str) -> str:
        msg = f"{issued}.{nonce}.{password_hash}".encode()
        return _b64(hmac.new(self.key, msg, hashlib.sha256).digest())

    def issue(self, password_hash: str, now: float | None = None) -> str:
        """A new session token."""
        issued = int(time.time() if now is None else now)
        nonce = secrets.token_urlsafe(12)
        return f"{issued}.{nonce}.{self._mac(issued, nonce, password_hash)}"

    def valid(self, token: str | None, password_hash: str | None, now: float | None = None) -> bool:
        """Whether ``token`` is a live session for the current password."""
        if not token or not password_hash:
            return False
        parts = token.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or parts[1] in self.revoked:
            return False
        issued = int(parts[0])
        age = (time.time() if now is None else now) - issued
        if age > self.lifetime or age < -60:
            return False
        return hmac.compare_digest(parts[2], self._mac(issued, parts[1], password_hash))

    def revoke(self, token: str | None) -> None:
        """End one session (logout)."""
        parts = (token or "").split(".")
        if len(parts) == 3 and len(self.revoked) < 10_000:
            self.revoked.add(parts[1])


@dataclass
class RateLimiter:
    """At most ``attempts`` failures per client within ``window`` seconds."""

    attempts: int
    window: float
    failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self.failures.setdefault(client, deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        return times

    def retry_after(self, client: str, now: float | None = None) -> float:
        """0 when ``client`` may try now, else seconds to wait."""
        now = time.monotonic() if now is None else now
        times = self._recent(client, now)
        if len(times) < self.attempts:
            return 0.0
        return max(0.0, self.window - (now - times[0]))

    def failed(self, client: str, now: float | None = None) -> None:
        """Count a failed attempt."""
        now = time.monotonic() if now is None else now
        self._recent(client, now).append(now)
        if len(self.failures) > 10_000:  # a flood of addresses: forget the idle ones
            for name in [c for c, t in self.failures.items() if not t]:
                del self.failures[name]

    def succeeded(self, client: str) -> None:
        """Forget a client's failures after a good login."""
        self.failures.pop(client, None)


@dataclass
class PasswordStore:
    """Where the password hash comes from: configuration, a secret file, or set at first visit."""

    configured: str | None = None  # from api.password_hash or api.password_file
    path: Path | None = None  # data_dir/api/password when set at the first visit
    _stored: str | None = None

    @property
    def managed(self) -> bool:
        """True when the password comes from the configuration (cannot be changed here)."""
        return self.configured is not None

    def current(self) -> str | None:
        """The hash in force, or None while no password has been set."""
        if self.configured:
            return self.configured
        if self._stored is None and self.path is not None and self.path.exists():
            text = self.path.read_text(encoding="utf-8").strip()
            self._stored = text if is_hash(text) else None
        return self._stored

    def set(self, password: str) -> str:
        """Store the hash of a new password; returns it."""
        if self.managed:
            raise PasswordError("the password is set in the configuration; change it there")
        encoded = hash_password(check_new_password(password))
        if self.path is not None:
            write_private(self.path, (encoded + "\n").encode())
        self._stored = encoded
        return encoded


def configured_hash(password_hash: str | None, password_file: Path | None) -> str | None:
    """The configured hash: ``password_hash``, else the file's hash or the hash of its password."""
    if password_hash:
        return password_hash
    if password_file is None:
        return None
    text = password_file.read_text(encoding="utf-8").strip()
    if not text:
        raise PasswordError(f"{password_file} is empty")
    return text if is_hash(text) else hash_password(text)


def session_key(path: Path | None) -> bytes:
    """The session signing key kept in ``path`` (made at first start); random if no path."""
    if path is None:
        return secrets.token_bytes(32)
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    write_private(path, key)
    return key
