"""The services a production Airflow runs on, started for a test: Postgres and Redis.

Each runs from its Debian package (``postgresql``, ``redis-server``), installed on first use
when missing (``apt-get update`` once, then ``apt-get install -y``: CI is a fresh machine, as
root), on a free loopback port, with its data in a throwaway directory, in a process group of
its own. A machine where they cannot be installed fails the test with the reason: a skipped
test would stand in for a feature it does not prove.

Like :mod:`tests.e2e.deployment`, nothing here imports pytest; failures raise
:class:`~tests.e2e.deployment.DeploymentError`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.deployment import DeploymentError, free_ports, stop_group, tail

APT_TIMEOUT = 900.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
#: The Unix user Postgres runs as when we are root (it refuses to run as root); the Debian
#: package creates it.
POSTGRES_USER = "postgres"
DB_NAME = "airflow"
DB_USER = "airflow"

_apt_updated = False


def _tail_text(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def postgres_bin_dir() -> Path | None:
    """Where ``initdb`` and ``postgres`` live: Debian keeps them off PATH, per major version."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def ensure_debian_packages() -> None:
    """Install ``postgresql`` and ``redis-server`` if their programs are missing (root, apt)."""
    missing = []
    if postgres_bin_dir() is None:
        missing.append("postgresql")
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DeploymentError(
            f"the distributed test needs the Debian packages {missing} and cannot install them here "
            f"({'not root' if os.geteuid() != 0 else 'no apt-get'}): run `apt-get install -y {' '.join(missing)}`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Wait for a dpkg lock held by another install instead of failing at once.
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    global _apt_updated
    if not _apt_updated:
        _run_apt(["apt-get", *lock, "update"], env)
        _apt_updated = True
    # The packages' install scripts would start a system-wide Postgres and Redis on their default
    # ports (where an init system runs them): a policy-rc.d that says "no" keeps them stopped
    # (the usual container practice), for the duration of the install only.
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\nexit 101\n", encoding="utf-8")
        policy.chmod(0o755)
    try:
        _run_apt(["apt-get", *lock, "install", "-y", "--no-install-recommends", *missing], env)
    finally:
        if ours:
            policy.unlink(missing_ok=True)
    if postgres_bin_dir() is None or shutil.which("redis-server") is None:
        raise DeploymentError(f"apt-get installed {missing}, yet initdb or redis-server is still missing")


def _run_apt(argv: list[str], env: dict[str, str]) -> None:
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as err:
        raise DeploymentError(f"`{' '.join(argv)}` did not finish in {APT_TIMEOUT:.0f} s") from err
    if done.returncode != 0:
        raise DeploymentError(
            f"`{' '.join(argv)}` failed (exit {done.returncode}):\n{_tail_text(done.stdout + done.stderr)}"
        )


@dataclass
class Service:
    """One started service: its process (a group leader), log and loopback port."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int
    data_dir: Path

    def stop(self) -> None:
        """Ask for a fast shutdown (SIGINT: Postgres aborts open sessions, Redis exits), then kill."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=STOP_TIMEOUT)
        stop_group(self.proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


def _as_user(user: str | None) -> dict[str, Any]:
    """``subprocess`` arguments that run a child as ``user`` with that user's groups only."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _start(argv: list[str], log: Path, data_dir: Path, *, user: str | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            argv,
            cwd=data_dir,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **_as_user(user),
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
        )


def _wait_port(service: Service, probe: bytes, expect: bytes) -> None:
    """Wait until the service answers ``probe`` with ``expect`` on its port, or fail with its log."""
    deadline = time.monotonic() + START_TIMEOUT
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", service.port), timeout=2) as sock:
                if not probe:
                    return
                sock.sendall(probe)
                if sock.recv(64).startswith(expect):
                    return
        except OSError as err:
            last = err
        time.sleep(0.2)
    service.stop()
    raise DeploymentError(
        f"{service.name} did not come up on 127.0.0.1:{service.port} within {START_TIMEOUT:.0f} s "
        f"(exit code {service.proc.returncode}, last error {last!r}):\n{tail(service.log)}"
    )


@contextlib.contextmanager
def postgres(run_dir: Path) -> Iterator[tuple[Service, str]]:
    """A fresh Postgres cluster with an ``airflow`` database; yields it and its SQLAlchemy URL.

    The cluster lives in a directory of its own under ``/tmp``, not under ``$TMPDIR``: pytest's
    directories and a test runner's private ``TMPDIR`` are root's alone, and Postgres runs as
    the ``postgres`` user when we are root, so every parent must be one it can enter. Removed afterwards.
    Durability is off (``fsync``, ``synchronous_commit``, ``full_page_writes``): a test DB.
    """
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise DeploymentError("Postgres is not installed (call ensure_debian_packages() first)")
    user: str | None = None
    if os.geteuid() == 0:
        try:
            entry = pwd.getpwnam(POSTGRES_USER)
        except KeyError as err:
            raise DeploymentError(f"running as root, but there is no {POSTGRES_USER!r} user to run Postgres") from err
        user = POSTGRES_USER
    base = Path(tempfile.mkdtemp(prefix="kontext-pg-", dir="/tmp"))
    data_dir = base / "data"
    log = run_dir / "postgres.log"
    if user is not None:
        os.chown(base, entry.pw_uid, entry.pw_gid)
    (port,) = free_ports(1)
    service: Service | None = None
    try:
        initdb = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", DB_USER, "--auth=trust", "-E", "UTF8", "--no-sync"],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
            **_as_user(user),
            cwd=base,
        )
        log.write_text(initdb.stdout + initdb.stderr, encoding="utf-8")
        if initdb.returncode != 0:
            raise DeploymentError(f"initdb failed (exit {initdb.returncode}):\n{tail(log)}")
        settings = {
            "port": str(port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(data_dir),
            "max_connections": "200",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        argv = [str(bin_dir / "postgres"), "-D", str(data_dir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        service = Service("postgres", _start(argv, log, base, user=user), log, port, data_dir)
        _wait_port(service, b"", b"")
        url = f"postgresql+psycopg2://{DB_USER}@127.0.0.1:{port}/{DB_NAME}"
        _create_database(service)
        yield service, url
    finally:
        if service is not None:
            service.stop()
        shutil.rmtree(base, ignore_errors=True)


def _create_database(service: Service) -> None:
    import psycopg2

    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=service.port, user=DB_USER, dbname="postgres")
        except psycopg2.OperationalError as err:  # accepting TCP before it accepts sessions
            if time.monotonic() > deadline or service.proc.poll() is not None:
                raise DeploymentError(f"cannot connect to Postgres: {err}\n{tail(service.log)}") from err
            time.sleep(0.3)
            continue
        break
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {DB_NAME}")
    finally:
        conn.close()


@contextlib.contextmanager
def redis(run_dir: Path) -> Iterator[tuple[Service, str]]:
    """A Redis server with no persistence in a throwaway directory; yields it and its broker URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise DeploymentError("redis-server is not installed (call ensure_debian_packages() first)")
    data_dir = run_dir / "redis"
    data_dir.mkdir()
    (port,) = free_ports(1)
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir)]
    argv += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""]
    log = run_dir / "redis.log"
    service = Service("redis", _start(argv, log, data_dir), log, port, data_dir)
    try:
        _wait_port(service, b"PING\r\n", b"+PONG")
        yield service, f"redis://127.0.0.1:{port}/0"
    finally:
        service.stop()
