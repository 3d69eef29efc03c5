"""`mmaudit dashboard` listens on loopback unless a login is configured: the CLI refuses before
anything listens, and the accounts' sources (environment, credentials file) are validated."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit.dashboard_auth import (
    CREDENTIALS_ENV,
    PASSWORD_ENV,
    USER_ENV,
    is_loopback,
    load_auth,
    require_auth_if_exposed,
)
from audit.errors import ConfigError

AUTH_VARS = (PASSWORD_ENV, USER_ENV, CREDENTIALS_ENV)
# a bcrypt hash (cost 4, to keep the tests fast) of "correct horse battery"
ANN_HASH = "$2b$04$CArJ6m1q462mPXC7KkeiNep/kIdTU5oou6VZRVQz8RNEHi2/DyTHy"


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "127.3.2.1", "::1", "localhost", "LOCALHOST", "::ffff:127.0.0.1"]
)
def test_loopback_addresses(address: str) -> None:
    assert is_loopback(address)


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0",
        "::",
        "",
        None,
        "10.1.2.3",
        "192.168.0.5",
        "fe80::1",
        "localhost.example.org",
        "127.0.0.1.nip.io",
    ],
)
def test_addresses_that_are_not_loopback(address: str | None) -> None:
    assert not is_loopback(address)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _dashboard(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run `mmaudit dashboard ARGS` in its own process group; one that starts serving is killed (with
    the server it started) after 20 s, and the test sees it as not refused."""
    port = _free_port()
    clean = {k: v for k, v in os.environ.items() if k not in AUTH_VARS}
    cmd = [sys.executable, "-m", "audit.cli", "dashboard", "--port", str(port), *args]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**clean, "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none", **(env or {})},
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        listening = _listening(port)
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n(still running after 20 s; listening on {port}: {listening})"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), port


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "10.1.2.3"])
def test_dashboard_refuses_a_non_loopback_address_without_a_login(address: str, tmp_path: Path) -> None:
    result, port = _dashboard("--run", str(tmp_path), "--address", address)
    assert result.returncode == 2, result.stderr
    assert _error_lines(result.stderr) == [
        f"error: --address {address}: not a loopback address, and no login is configured; set "
        f"{PASSWORD_ENV} or give --credentials FILE (or {CREDENTIALS_ENV}), or serve on 127.0.0.1"
    ]
    assert "Traceback" not in result.stderr
    assert not _listening(port)


def test_dashboard_refuses_a_password_too_short(tmp_path: Path) -> None:
    result, port = _dashboard("--run", str(tmp_path), "--address", "0.0.0.0", env={PASSWORD_ENV: "short"})
    assert result.returncode == 2
    assert _error_lines(result.stderr) == [f"error: {PASSWORD_ENV}: a password needs at least 8 characters"]
    assert "Traceback" not in result.stderr
    assert not _listening(port)


def test_dashboard_refuses_a_credentials_file_with_a_plaintext_password(tmp_path: Path) -> None:
    creds = tmp_path / "reviewers.yaml"
    creds.write_text("users:\n  ann: correct horse battery\n")
    result, port = _dashboard("--run", str(tmp_path), "--address", "0.0.0.0", "--credentials", str(creds))
    assert result.returncode == 2
    assert _error_lines(result.stderr) == [
        f"error: {creds}: users.ann: not a bcrypt hash (plaintext passwords are not read from files)"
    ]
    assert not _listening(port)


def test_no_variables_and_no_file_means_no_login() -> None:
    assert load_auth(None, env={}) is None
    with pytest.raises(ConfigError, match="not a loopback address"):
        require_auth_if_exposed("0.0.0.0", None)
    require_auth_if_exposed("127.0.0.1", None)  # loopback needs none


def test_password_variable_gives_one_account_named_by_the_user_variable() -> None:
    auth = load_auth(None, env={PASSWORD_ENV: "correct horse battery", USER_ENV: "Ann"})
    assert auth is not None and auth.usernames == ("ann",)
    require_auth_if_exposed("0.0.0.0", auth)
    assert load_auth(None, env={PASSWORD_ENV: "correct horse battery"}).usernames == ("reviewer",)


def test_credentials_file_from_the_variable_and_the_password_variable_combine(tmp_path: Path) -> None:
    creds = tmp_path / "reviewers.yaml"
    creds.write_text(f'users:\n  Ann: "{ANN_HASH}"\n  bob: "{ANN_HASH}"\n')
    auth = load_auth(None, env={CREDENTIALS_ENV: str(creds), PASSWORD_ENV: "a long password", USER_ENV: "cy"})
    assert auth.usernames == ("ann", "bob", "cy")
    with pytest.raises(ConfigError, match="user 'bob' is also in the credentials file"):
        load_auth(creds, env={PASSWORD_ENV: "a long password", USER_ENV: "bob"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("users: [ann]\n", "expected exactly one key, `users:`"),
        ("users: {}\n", "`users:` is empty"),
        ("users: {ann: x}\nextra: 1\n", "expected exactly one key, `users:`"),
        ("users: {ann: [\n", "not valid YAML"),
        (f'users: {{"a b": "{ANN_HASH}"}}\n', "invalid username 'a b'"),
        (f'users: {{ann: "{ANN_HASH}", ANN: "{ANN_HASH}"}}\n', "differ only in case"),
        ("users: {ann: 12}\n", "users.ann: not a bcrypt hash"),
    ],
)
def test_invalid_credentials_files_fail_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    creds = tmp_path / "reviewers.yaml"
    creds.write_text(text)
    with pytest.raises(ConfigError, match=message) as e:
        load_auth(creds, env={})
    assert str(e.value).startswith(f"{creds}: ")


def test_missing_credentials_file_fails_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"reviewers\.yaml: cannot read the credentials file"):
        load_auth(tmp_path / "reviewers.yaml", env={})


def test_credentials_are_bcrypt_hashes_that_check() -> None:
    import bcrypt

    auth = load_auth(None, env={PASSWORD_ENV: "correct horse battery", USER_ENV: "ann"})
    stored = auth.credentials()["usernames"]["ann"]["password"]
    assert stored != "correct horse battery"
    assert bcrypt.checkpw(b"correct horse battery", stored.encode())
    assert bcrypt.checkpw(b"correct horse battery", ANN_HASH.encode())  # the constant above is real


@pytest.mark.parametrize(
    ("value", "why"), [("0", "must be at least 1, got 0"), ("-3", "must be at least 1, got -3")]
)
def test_dashboard_refuses_a_bad_break_after_before_serving(value: str, why: str, tmp_path: Path) -> None:
    result, port = _dashboard("--run", str(tmp_path), "--break-after", value)
    assert result.returncode == 2, result.stderr
    assert _error_lines(result.stderr) == [f"error: --break-after: {why}"]
    assert not _listening(port)


def test_dashboard_without_run_and_no_finished_run_is_one_error_line(tmp_path: Path) -> None:
    port = _free_port()
    cmd = [sys.executable, "-m", "audit.cli", "dashboard", "--port", str(port)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert _error_lines(result.stderr) == [
        "error: runs: no finished run folder in it (run `make audit` first, or pass --run)"
    ]
    assert not _listening(port)


def test_dashboard_hands_the_break_limit_and_the_run_to_the_app(tmp_path: Path) -> None:
    """The Streamlit process the CLI starts gets --run and --break-after (from the option, else the
    environment variable)."""
    import psutil

    port = _free_port()
    cmd = [sys.executable, "-m", "audit.cli", "dashboard", "--run", str(tmp_path), "--port", str(port)]
    clean = {k: v for k, v in os.environ.items() if k not in AUTH_VARS}
    proc = subprocess.Popen(
        [*cmd, "--break-after", "7"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**clean, "MMAUDIT_BREAK_AFTER": "99"}, start_new_session=True,
    )  # fmt: skip
    try:
        args: list[str] = []
        deadline = time.monotonic() + 30
        while not args and time.monotonic() < deadline and proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                line = child.cmdline()
                if "streamlit" in line:
                    args = line[line.index("--") + 1 :]
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert args == ["--run", str(tmp_path), "--break-after", "7"]
