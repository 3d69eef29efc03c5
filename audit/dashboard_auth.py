"""Who may open the review dashboard: loopback only, unless a login is configured.

The dashboard shows harmful images behind a blur, so it listens on 127.0.0.1 by default. Any other
address needs accounts, from either (or both):

- MMAUDIT_DASHBOARD_PASSWORD (and optionally MMAUDIT_DASHBOARD_USER, default ``reviewer``): one
  account; the value is the password itself or its bcrypt hash;
- a credentials file (``--credentials FILE`` or MMAUDIT_DASHBOARD_CREDENTIALS), YAML of the form
  ``users: {ann: "$2b$12$...", bob: "$2b$12$..."}`` with one bcrypt hash per reviewer.

Password checks and hashing are streamlit-authenticator's (bcrypt); nothing here is hand-written
crypto. The logged-in username is the reviewer name recorded with each decision.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from audit.errors import ConfigError

PASSWORD_ENV = "MMAUDIT_DASHBOARD_PASSWORD"
USER_ENV = "MMAUDIT_DASHBOARD_USER"
CREDENTIALS_ENV = "MMAUDIT_DASHBOARD_CREDENTIALS"
DEFAULT_USER = "reviewer"
MIN_PASSWORD_CHARS = 8
# the login form lowercases what is typed, so usernames are stored lowercase; one bounded character
# class, linear to match
USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
BCRYPT_HASH = re.compile(r"\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}")


@dataclass(frozen=True)
class Account:
    username: str
    secret: str  # a bcrypt hash, or the plaintext password from the environment (hashed before use)

    @property
    def hashed(self) -> bool:
        return BCRYPT_HASH.fullmatch(self.secret) is not None


@dataclass(frozen=True)
class DashboardAuth:
    accounts: tuple[Account, ...]

    @property
    def usernames(self) -> tuple[str, ...]:
        return tuple(a.username for a in self.accounts)

    def credentials(self) -> dict:
        """streamlit-authenticator's credentials structure, every password a bcrypt hash (slow: ~0.25 s
        per plaintext password, so callers cache it)."""
        from streamlit_authenticator import Hasher

        users = {
            a.username: {"name": a.username, "password": a.secret if a.hashed else Hasher.hash(a.secret)}
            for a in self.accounts
        }
        return {"usernames": users}


def is_loopback(address: str | None) -> bool:
    """127.0.0.0/8, ::1 (also IPv4-mapped), ``localhost`` or a unix socket; unset or empty means every
    interface to Streamlit, so it is not loopback."""
    if not address:
        return False
    address = address.strip().lower()
    if address == "localhost" or address.startswith("unix://"):
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # a host name: whatever it resolves to now, it is not known to stay loopback
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def load_auth(
    credentials: str | Path | None = None, env: Mapping[str, str] | None = None
) -> DashboardAuth | None:
    """Accounts from ``credentials`` (else $MMAUDIT_DASHBOARD_CREDENTIALS) and $MMAUDIT_DASHBOARD_PASSWORD;
    None when neither is set. ConfigError naming the file, user or variable for anything invalid."""
    env = os.environ if env is None else env
    accounts: list[Account] = []
    path = credentials or env.get(CREDENTIALS_ENV) or None
    if path is not None:
        accounts += _read_credentials_file(Path(path))
    if PASSWORD_ENV in env:
        accounts.append(_env_account(env))
    if not accounts:
        return None
    seen: set[str] = set()
    for a in accounts:
        if a.username in seen:
            raise ConfigError(f"{USER_ENV}: user {a.username!r} is also in the credentials file {path}")
        seen.add(a.username)
    return DashboardAuth(tuple(accounts))


def require_auth_if_exposed(address: str | None, auth: DashboardAuth | None) -> None:
    """ConfigError unless ``address`` is loopback or a login is configured."""
    if auth is None and not is_loopback(address):
        shown = address if address else "(unset: every interface)"
        raise ConfigError(
            f"--address {shown}: not a loopback address, and no login is configured; set "
            f"{PASSWORD_ENV} or give --credentials FILE (or {CREDENTIALS_ENV}), or serve on 127.0.0.1"
        )


def _env_account(env: Mapping[str, str]) -> Account:
    secret = env[PASSWORD_ENV]
    username = _username(env.get(USER_ENV) or DEFAULT_USER, USER_ENV)
    account = Account(username, secret)
    if not account.hashed and len(secret) < MIN_PASSWORD_CHARS:
        raise ConfigError(f"{PASSWORD_ENV}: a password needs at least {MIN_PASSWORD_CHARS} characters")
    return account


def _read_credentials_file(path: Path) -> list[Account]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the credentials file ({e.strerror or e})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    if not isinstance(data, dict) or set(data) != {"users"} or not isinstance(data["users"], dict):
        raise ConfigError(f"{path}: expected exactly one key, `users:`, mapping usernames to bcrypt hashes")
    if not data["users"]:
        raise ConfigError(f"{path}: `users:` is empty")
    accounts = []
    for name, secret in data["users"].items():
        username = _username(str(name), f"{path}: users")
        account = Account(username, secret if isinstance(secret, str) else "")
        if not account.hashed:
            raise ConfigError(
                f"{path}: users.{username}: not a bcrypt hash (plaintext passwords are not read from files)"
            )
        accounts.append(account)
    if len({a.username for a in accounts}) != len(accounts):
        raise ConfigError(f"{path}: two usernames differ only in case (usernames are case-insensitive)")
    return accounts


def _username(name: str, where: str) -> str:
    username = name.strip().lower()
    if USERNAME.fullmatch(username) is None:
        raise ConfigError(
            f"{where}: invalid username {name[:80]!r} (1 to 64 of a-z 0-9 . _ @ -, starting with a letter "
            "or digit)"
        )
    return username
