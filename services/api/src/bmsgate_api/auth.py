"""Passwords (scrypt), signed session cookies, API tokens and the login rate limit.

No web framework here. What must outlive a restart (revoked sessions, recent login failures,
API tokens) is kept in small JSON files under data_dir/api when a path is given.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bmsgate_common.config_view import MASK
from bmsgate_common.durable import write_durably
from bmsgate_common.logs import hold_secrets

if TYPE_CHECKING:
    from bmsgate_common.settings import Settings

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


def hashed_passwords(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Every password typed where the file keeps a hash, replaced by its hash (in place).

    The forms take the web UI's password (api.password_hash) and each viewer's as typed; the
    file only ever holds their hashes. A hash or a masked value stays as it is. Returns the
    passwords that cannot be used as (dotted key, why); those stay unchanged, and unsaved.
    """
    api = data.get("api")
    if not isinstance(api, dict):
        return []
    places: list[tuple[str, dict[str, Any]]] = [("api.password_hash", api)]
    viewers = api.get("viewers")
    if isinstance(viewers, list):
        places += [
            (f"api.viewers.{i}.password_hash", v)
            for i, v in enumerate(viewers)
            if isinstance(v, dict)
        ]
    problems = []
    for key, holder in places:
        typed = holder.get("password_hash")
        if not isinstance(typed, str) or is_hash(typed) or MASK in typed:
            continue
        try:
            holder["password_hash"] = hash_password(check_new_password(typed))
        except PasswordError as err:
            problems.append((key, str(err)))
    return problems


def read_new_password(prompt: str) -> str:
    """A new password from the command line: typed twice at a terminal, else one line of stdin.

    PasswordError when the two differ or the password is not acceptable.
    """
    if sys.stdin.isatty():
        password = getpass.getpass(prompt)
        if getpass.getpass("Again: ") != password:
            raise PasswordError("the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    return check_new_password(password)


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
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=256 << 20,
            dklen=len(_unb64(want)),
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got, _unb64(want))


def read_json(path: Path | None, default: Any) -> Any:
    """The JSON kept in ``path``; ``default`` when there is none or it is unreadable."""
    if path is None:
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def write_json(path: Path | None, data: Any) -> None:
    """Keep ``data`` in ``path`` (owner only); nothing without a path."""
    if path is not None:
        write_durably(path, json.dumps(data, separators=(",", ":")).encode())


class Clock:
    """[s] since the epoch as the wall clock said at start, advanced by the monotonic clock.

    Sessions and lockouts measure their intervals with it: a wall clock stepped back or forward
    (NTP after a boot without a real-time clock, a user fixing the time) neither ends every
    session nor stretches a 300 s lockout by the step. The values are epoch seconds, so they can
    be kept in files and read again after a restart.
    """

    def __init__(self) -> None:
        self._wall, self._mono = time.time(), time.monotonic()

    def __call__(self) -> float:
        """Now."""
        return self._wall + time.monotonic() - self._mono


CLOCK = Clock()


@dataclass
class Sessions:
    """Stateless sessions: ``issued.nonce.mac``, the MAC keyed by a secret and the password hash.

    Changing the password ends every session; a logout revokes its nonce until the session would
    have expired anyway, in ``path`` when given so that a restart does not forget it.
    """

    key: bytes
    lifetime: float  # [s]
    path: Path | None = None  # data_dir/api/revoked.json
    revoked: dict[str, float] = field(default_factory=dict)  # nonce -> [s] epoch it expires

    def __post_init__(self) -> None:
        stored = read_json(self.path, {})
        if isinstance(stored, dict):
            now = CLOCK()
            self.revoked |= {
                str(k): float(v)
                for k, v in stored.items()
                if isinstance(v, int | float) and v > now
            }

    def _mac(self, issued: int, nonce: str, password_hash: str, user: str = "") -> str:
        who = f"{user}." if user else ""  # a viewer's session names the viewer
        msg = f"{issued}.{nonce}.{who}{password_hash}".encode()
        return _b64(hmac.new(self.key, msg, hashlib.sha256).digest())

    def issue(self, password_hash: str, now: float | None = None, user: str = "") -> str:
        """A new session token: ``issued.nonce.mac``, a viewer's ``issued.nonce.user.mac``."""
        issued = int(CLOCK() if now is None else now)
        nonce = secrets.token_urlsafe(12)
        who = f"{user}." if user else ""
        return f"{issued}.{nonce}.{who}{self._mac(issued, nonce, password_hash, user)}"

    @staticmethod
    def _parts(token: str | None) -> list[str] | None:
        parts = (token or "").split(".")
        if len(parts) not in (3, 4) or not parts[0].isdigit():
            return None
        return parts

    def user_of(self, token: str | None) -> str:
        """The viewer a session token names; "" for the owner's (or a malformed) token."""
        parts = self._parts(token)
        return parts[2] if parts and len(parts) == 4 else ""

    def valid(self, token: str | None, password_hash: str | None, now: float | None = None) -> bool:
        """Whether ``token`` is a live session for ``password_hash`` (its user's password)."""
        parts = self._parts(token)
        if not parts or not password_hash or parts[1] in self.revoked:
            return False
        issued = int(parts[0])
        age = (CLOCK() if now is None else now) - issued
        if age > self.lifetime or age < -60:
            return False
        user = parts[2] if len(parts) == 4 else ""
        return hmac.compare_digest(parts[-1], self._mac(issued, parts[1], password_hash, user))

    def revoke(self, token: str | None, now: float | None = None) -> None:
        """End one session (logout); only a well-signed token is remembered."""
        parts = self._parts(token)
        if not parts:
            return
        now = CLOCK() if now is None else now
        self.revoked = {n: t for n, t in self.revoked.items() if t > now}
        if len(self.revoked) < 10_000:
            self.revoked[parts[1]] = int(parts[0]) + self.lifetime
            write_json(self.path, self.revoked)


@dataclass
class RateLimiter:
    """Failed logins: ``attempts`` per client and ``ceiling`` from everyone per ``window`` s.

    The window is measured with CLOCK.
    ``begin`` checks and counts an attempt in one step (no await between them), so concurrent
    requests cannot all pass the check before the first failure is counted; a good login takes
    its attempt back. With a ``path`` the recent failures are kept there so that a restart does
    not reset them: written when a client or everyone reaches the limit, else at most every
    SAVE_EVERY seconds, never once per attempt.
    """

    attempts: int
    window: float  # [s]
    path: Path | None = None  # data_dir/api/login_failures.json
    ceiling: int = 50
    failures: dict[str, deque[float]] = field(default_factory=dict)
    everyone: deque[tuple[float, str]] = field(default_factory=deque)
    _saved: float = float("-inf")  # [s] CLOCK
    _dirty: bool = False

    SAVE_EVERY = 10.0  # [s]

    def __post_init__(self) -> None:
        stored = read_json(self.path, {})
        now = CLOCK()
        if isinstance(stored, dict):
            for client, times in stored.items():
                if isinstance(times, list):
                    # a time ahead of now (the wall clock was set back since) counts as now
                    kept = [min(float(t), now) for t in times if isinstance(t, int | float)]
                    self.failures[str(client)] = deque(sorted(kept)[-self.attempts :])
        self.everyone = deque(sorted((t, c) for c, ts in self.failures.items() for t in ts))

    def _recent(self, client: str, now: float) -> deque[float]:
        while self.everyone and now - self.everyone[0][0] >= self.window:
            self.everyone.popleft()
        times = self.failures.setdefault(client, deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        return times

    def _save(self, now: float, urgent: bool) -> None:
        self._dirty = True
        if self.path is None or not (urgent or now - self._saved >= self.SAVE_EVERY):
            return
        recent = {c: list(t) for c, t in self.failures.items() if t and now - t[-1] < self.window}
        write_json(self.path, recent)
        self._saved, self._dirty = now, False

    def flush(self) -> None:
        """Write what is not written yet (at shutdown)."""
        if self._dirty:
            self._save(CLOCK(), urgent=True)

    def retry_after(self, client: str, now: float | None = None) -> float:
        """0 when ``client`` may try now, else seconds to wait."""
        now = CLOCK() if now is None else now
        times = self._recent(client, now)
        if len(times) >= self.attempts:
            return max(0.0, self.window - (now - times[0]))
        if len(self.everyone) >= self.ceiling:
            return max(0.0, self.window - (now - self.everyone[0][0]))
        return 0.0

    def begin(self, client: str, now: float | None = None) -> float:
        """Count an attempt (a failure until ``succeeded``) and return 0, or the wait, uncounted."""
        now = CLOCK() if now is None else now
        wait = self.retry_after(client, now)
        if wait == 0:
            self.failed(client, now)
        return wait

    def failed(self, client: str, now: float | None = None) -> None:
        """Count a failed attempt."""
        now = CLOCK() if now is None else now
        times = self._recent(client, now)
        times.append(now)
        self.everyone.append((now, client))
        if len(self.failures) > 10_000:  # a flood of addresses: forget the idle ones
            for name in [c for c, t in self.failures.items() if not t]:
                del self.failures[name]
        self._save(now, urgent=len(times) >= self.attempts or len(self.everyone) >= self.ceiling)

    def succeeded(self, client: str) -> None:
        """Forget a client's failures (and its attempt just counted) after a good login."""
        if self.failures.pop(client, None):
            self.everyone = deque(e for e in self.everyone if e[1] != client)
            self._save(CLOCK(), urgent=True)

    def locked(self, client: str) -> bool:
        """Whether ``client`` has just used up its attempts (for the log)."""
        return len(self.failures.get(client, ())) >= self.attempts


@dataclass
class PasswordStore:
    """Where the password hash comes from: configuration, a secret file, or set at first visit."""

    configured: str | None = None  # from api.password_hash or api.password_file
    path: Path | None = None  # data_dir/api/password when set at the first visit
    _stored: str | None = None
    _seen: int | None = None  # [ns] the file's mtime when read: `bmsgate config password` sets it

    @property
    def managed(self) -> bool:
        """True when the password comes from the configuration (cannot be changed here)."""
        return self.configured is not None

    def current(self) -> str | None:
        """The hash in force, or None while no password has been set."""
        if self.configured:
            return self.configured
        if self.path is not None:
            try:
                mtime = self.path.stat().st_mtime_ns
            except FileNotFoundError:
                return self._stored
            if mtime != self._seen:
                text = self.path.read_text(encoding="utf-8").strip()
                self._stored, self._seen = (text if is_hash(text) else None), mtime
        return self._stored

    def set(self, password: str) -> str:
        """Store the hash of a new password; returns it."""
        if self.managed:
            raise PasswordError("the password is set in the configuration; change it there")
        encoded = hash_password(check_new_password(password))
        hold_secrets([encoded])  # the service's log lines never show it
        if self.path is not None:
            write_durably(self.path, (encoded + "\n").encode())
        self._stored = encoded
        return encoded


def password_store(settings: Settings, persist: bool = True) -> PasswordStore:
    """The password of ``settings``: configured, else kept in data_dir/api/password."""
    api = settings.api
    hashed = configured_hash(
        api.password_hash.get_secret_value() if api.password_hash else None, api.password_file
    )
    return PasswordStore(hashed, settings.data_dir / "api" / "password" if persist else None)


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
    write_durably(path, key)
    return key


TOKEN_PREFIX = "bmsgate_"
SCOPES = ("read", "control")  # what an API token may do: read, or all a login may


class TokenLimitError(ValueError):
    """No more tokens may be made."""


@dataclass(frozen=True)
class TokenInfo:
    """An API token as listed: never the token itself."""

    id: str
    name: str
    created: float  # [s] epoch
    last_used: float | None = None  # [s] epoch
    scope: str = "control"  # "read": reading only; "control": what a login may do
    packs: tuple[str, ...] | None = None  # a read token's packs and banks; None: every one


@dataclass
class Tokens:
    """API tokens for scripts (``Authorization: Bearer``): only their SHA-256 is stored.

    A token is ``bmsgate_<id>_<secret>`` with 256 random bits, so a fast hash is enough (no
    password to guess); ``path`` is data_dir/api/tokens.json.
    """

    path: Path | None = None
    _hashes: dict[str, str] = field(default_factory=dict)  # id -> sha256 hex
    _info: dict[str, TokenInfo] = field(default_factory=dict)

    MAX = 100
    SAVE_USE_EVERY = 60.0  # [s]: last_used is written at most this often per token

    def __post_init__(self) -> None:
        stored = read_json(self.path, [])
        for row in stored if isinstance(stored, list) else []:
            try:
                scope = str(row.get("scope", "control"))  # tokens made before scopes had all
                if scope not in SCOPES:
                    continue
                packs = row.get("packs")
                info = TokenInfo(
                    str(row["id"]),
                    str(row["name"]),
                    float(row["created"]),
                    row.get("last_used"),
                    scope,
                    None if packs is None else tuple(str(p) for p in packs),
                )
                self._hashes[info.id] = str(row["sha256"])
            except (KeyError, TypeError, ValueError):
                continue  # a damaged row: that token no longer works
            self._info[info.id] = info

    def _save(self) -> None:
        rows = [
            {
                "id": i.id,
                "name": i.name,
                "created": i.created,
                "last_used": i.last_used,
                "scope": i.scope,
                "packs": None if i.packs is None else list(i.packs),
                "sha256": self._hashes[i.id],
            }
            for i in self._info.values()
        ]
        write_json(self.path, rows)

    def listed(self) -> list[TokenInfo]:
        """Every token, oldest first."""
        return sorted(self._info.values(), key=lambda i: i.created)

    def create(
        self,
        name: str,
        now: float | None = None,
        scope: str = "read",
        packs: tuple[str, ...] | None = None,
    ) -> tuple[TokenInfo, str]:
        """A new token: its listing and the token itself, shown this once only.

        ``packs`` limits a read token to those packs and banks; a control token sees every one.
        """
        if packs is not None and scope != "read":
            raise ValueError("a control token sees every pack: limit only a read token")
        if len(self._info) >= self.MAX:
            raise TokenLimitError(f"at most {self.MAX} tokens: revoke one first")
        token_id = secrets.token_hex(4)
        while token_id in self._info:
            token_id = secrets.token_hex(4)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        info = TokenInfo(
            token_id, name, time.time() if now is None else now, scope=scope, packs=packs
        )
        self._hashes[token_id] = hashlib.sha256(token.encode()).hexdigest()
        self._info[token_id] = info
        self._save()
        return info, token

    def revoke(self, token_id: str) -> bool:
        """Forget a token; False when there is no such token."""
        if self._info.pop(token_id, None) is None:
            return False
        del self._hashes[token_id]
        self._save()
        return True

    def check(self, token: str | None, now: float | None = None) -> TokenInfo | None:
        """The token's listing when ``token`` is a live token, else None."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        token_id = token[len(TOKEN_PREFIX) :].split("_", 1)[0]
        want = self._hashes.get(token_id)
        if want is None:
            return None
        if not hmac.compare_digest(want, hashlib.sha256(token.encode()).hexdigest()):
            return None
        now = time.time() if now is None else now
        info = self._info[token_id]
        if info.last_used is None or now - info.last_used >= self.SAVE_USE_EVERY:
            info = self._info[token_id] = replace(info, last_used=now)
            self._save()
        return info


class AccountError(ValueError):
    """A viewer account that cannot be made or removed; the message says why."""


@dataclass(frozen=True)
class Viewer:
    """A viewer account: a login that may only read ``packs`` (packs and banks)."""

    name: str
    password_hash: str
    packs: tuple[str, ...]
    configured: bool = False  # from api.viewers: changed only in the configuration file
    created: float | None = None  # [s] epoch, for one made on the Accounts page


@dataclass
class Viewers:
    """Viewer accounts: those of api.viewers, and those made on the Accounts page.

    The page's accounts are kept in ``path`` (data_dir/api/viewers.json, owner only) with their
    scrypt hash, beside the tokens; the configured ones cannot be changed from the web.
    """

    configured: tuple[Viewer, ...] = ()
    path: Path | None = None
    _made: dict[str, Viewer] = field(default_factory=dict)

    MAX = 100

    def __post_init__(self) -> None:
        stored = read_json(self.path, [])
        for row in stored if isinstance(stored, list) else []:
            try:
                viewer = Viewer(
                    str(row["name"]),
                    str(row["password_hash"]),
                    tuple(str(p) for p in row["packs"]),
                    created=float(row["created"]),
                )
            except (KeyError, TypeError, ValueError):
                continue  # a damaged row: that account no longer logs in
            if is_hash(viewer.password_hash) and viewer.packs:
                self._made[viewer.name] = viewer

    def _save(self) -> None:
        rows = [
            {
                "name": v.name,
                "password_hash": v.password_hash,
                "packs": list(v.packs),
                "created": v.created,
            }
            for v in self._made.values()
        ]
        write_json(self.path, rows)

    def listed(self) -> list[Viewer]:
        """Every account: the configured ones first, then those made here, oldest first."""
        made = sorted(self._made.values(), key=lambda v: v.created or 0.0)
        return [*self.configured, *made]

    def find(self, name: str) -> Viewer | None:
        """The account called ``name``; a configured one wins over one made here."""
        return next((v for v in self.configured if v.name == name), None) or self._made.get(name)

    def create(
        self, name: str, password: str, packs: tuple[str, ...], now: float | None = None
    ) -> Viewer:
        """Make an account (the password hashed with scrypt, never kept)."""
        if self.find(name) is not None:
            raise AccountError(f"there is already an account {name!r}")
        if len(self._made) >= self.MAX:
            raise AccountError(f"at most {self.MAX} viewer accounts: delete one first")
        if not packs:
            raise AccountError("a viewer needs at least one pack")
        encoded = hash_password(check_new_password(password))
        viewer = Viewer(name, encoded, packs, created=time.time() if now is None else now)
        self._made[name] = viewer
        self._save()
        return viewer

    def delete(self, name: str) -> bool:
        """Remove an account made here (its sessions end with it); False when there is none."""
        if any(v.name == name for v in self.configured):
            raise AccountError(f"{name!r} is set in api.viewers: remove it in the configuration")
        if self._made.pop(name, None) is None:
            return False
        self._save()
        return True
