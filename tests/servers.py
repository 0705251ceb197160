"""Private PostgreSQL and Redis servers for tests that stop, restart or kill them: each on a loopback
port of its own with a data directory in a temp dir, started and stopped here, never the machine's
shared servers.

PostgreSQL runs from the machine's server binaries (Debian: /usr/lib/postgresql/<major>/bin, the
newest major that has PostGIS), as the current user, or as the `postgres` user when the tests run as
root (initdb refuses root). Every process is stopped by its own id, even when a test fails.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

PG_ROOT = Path("/usr/lib/postgresql")
PG_SHARE = Path("/usr/share/postgresql")
# fsync off: the servers only have to survive their processes being killed, never the machine
# losing power, and the kernel keeps what was written. Commits still wait for their WAL write
# (synchronous_commit stays on), so a commit acknowledged before a crash is there after it.
PG_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "60",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pg_bin() -> Path | None:
    """The bin directory of the newest PostgreSQL on this machine whose PostGIS is installed."""
    majors = sorted((p for p in PG_ROOT.glob("*") if p.name.isdigit()), key=lambda p: int(p.name), reverse=True)
    for major in majors:
        if (major / "bin" / "initdb").exists() and (PG_SHARE / major.name / "extension" / "postgis.control").exists():
            return major / "bin"
    return None


def missing_binaries() -> str | None:
    """Why the private servers cannot run here, or None when they can."""
    missing = []
    if pg_bin() is None:
        missing.append("PostgreSQL server binaries with PostGIS (Debian: postgresql-15 postgresql-15-postgis-3)")
    if shutil.which("redis-server") is None:
        missing.append("redis-server (Debian: redis-server)")
    return "; ".join(missing) or None


def wait_for_port(port: int, timeout_s: float, alive: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if alive is not None and alive.poll() is not None:
                raise RuntimeError(f"the process for port {port} exited with {alive.returncode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s") from None
            time.sleep(0.02)


class PostgresServer:
    """A PostgreSQL cluster of its own: initdb into a temp dir, then start, restart and stop with pg_ctl."""

    def __init__(self, directory: Path, bin_dir: Path, settings: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.settings = PG_SETTINGS | (settings or {})
        self.data = directory / "data"
        self.log = directory / "server.log"
        self.bin = bin_dir
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        # initdb refuses to run as root: a root test runner hands the cluster to the postgres user.
        self.owner = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str, timeout_s: float = 60) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.owner is not None:
            command = ["runuser", "-u", self.owner, "--", *command]
        done = subprocess.run(command, cwd=self.directory, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()}\n{log}")

    def init(self) -> None:
        if self.owner is not None:
            entry = pwd.getpwnam(self.owner)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "-N")
        options = {**self.settings, "port": str(self.port), "unix_socket_directories": str(self.directory)}
        with (self.data / "postgresql.auto.conf").open("a") as conf:
            conf.writelines(f"{name} = '{value}'\n" for name, value in options.items())

    def start(self) -> None:
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log))

    def restart(self, mode: str = "fast") -> None:
        """Stops the server (`fast`: its backends are told to end; `immediate`: a crash) and starts it again."""
        self._run("pg_ctl", "restart", "-w", "-t", "60", "-m", mode, "-D", str(self.data), "-l", str(self.log))

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", str(self.data))

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """Stops the server whatever its state: an immediate shutdown, else SIGKILL of its postmaster."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        try:
            self._run("pg_ctl", "stop", "-w", "-t", "20", "-m", "immediate", "-D", str(self.data))
        except (RuntimeError, subprocess.TimeoutExpired):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def database_url(self, name: str) -> str:
        return self.url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def postgres_server(settings: dict[str, str] | None = None) -> Iterator[PostgresServer]:
    """A started private cluster (PG_SETTINGS, then `settings`), stopped and deleted afterwards whatever happened."""
    bin_dir = pg_bin()
    if bin_dir is None:
        raise RuntimeError(missing_binaries() or "no PostgreSQL binaries")
    directory = Path(tempfile.mkdtemp(prefix="checkin-pg-"))
    server = PostgresServer(directory, bin_dir, settings)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.kill()
        shutil.rmtree(directory, ignore_errors=True)


class RedisServer:
    """redis-server on a port of its own, without persistence; can be stopped and started again on that port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            # Options on the command line: the Debian package's config file is not read.
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", str(self.directory), "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.directory,
        )
        wait_for_port(self.port, 10, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # an outage, not a shutdown: no time to say goodbye to clients
            self.proc.wait(10)
        self.proc = None


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    directory = Path(tempfile.mkdtemp(prefix="checkin-redis-"))
    server = RedisServer(directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
