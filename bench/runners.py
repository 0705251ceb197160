"""Running things and measuring them: the service as deployed, wrk, pgbench, py-spy, and where the
CPU went (per component, read from /proc) during each run.

Every target is on loopback, every run is bounded in time (and killed if it overstays), and only
processes started here are ever stopped, by their own id.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psycopg
from rich.progress import Progress
from sqlalchemy.engine import make_url

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / "data"  # per-run data files, logs and profiles (gitignored)
VENV_BIN = ROOT / ".venv" / "bin"
GRACE_S = 30  # beyond a run's own duration, before it is killed
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- tools


def _apt_install(package: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", package], check=True, stdout=subprocess.DEVNULL, env=env)


def _can_apt() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def ensure_wrk() -> str:
    if not shutil.which("wrk"):
        if not _can_apt():
            raise SystemExit("bench: wrk is missing; install it (Debian: apt-get install wrk), or run as root")
        _apt_install("wrk")
    return shutil.which("wrk") or sys.exit("bench: wrk did not install")


def ensure_pgbench() -> str:
    found = shutil.which("pgbench")
    if not found and _can_apt():
        _apt_install("postgresql-client")
        found = shutil.which("pgbench")
    if not found:
        raise SystemExit(
            "bench: pgbench is missing; it ships with the PostgreSQL packages "
            "(Debian: postgresql-client, or postgresql-15 for the 15 client)"
        )
    return found


def ensure_py_spy() -> str:
    """py-spy is the bench's own tool, installed into the venv on first use (a PyPI wheel)."""
    path = VENV_BIN / "py-spy"
    if not path.exists():
        subprocess.run(
            [str(VENV_BIN / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", "py-spy"],
            check=True,
        )
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- CPU by component


def _stat(pid: str) -> tuple[str, int, float] | None:
    """comm, parent pid and CPU seconds of a process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return raw[raw.index("(") + 1 : raw.rindex(")")], int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def _machine_cpu() -> tuple[float, float, float]:
    """Busy, interrupt (mostly loopback networking) and total CPU seconds of the machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, (values[5] + values[6]) / CLK_TCK, total / CLK_TCK


def _children_cpu() -> float:
    """CPU seconds of this process's finished children: the load generators."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds by component during one run, from /proc. Sampled while the run goes on, so that
    processes ending before it does (pgbench's backends) still count. The service's processes are
    'api'; PostgreSQL's are 'postgres' when they serve the bench database or the whole server
    (checkpointer, WAL writer...), while other databases' backends (another test suite, say) end up
    in 'other', with everything else the machine did meanwhile."""

    def __init__(self, service_pid: int | None, database: str) -> None:
        self.service_pid = service_pid
        self.database = database
        self.kinds: dict[str, str | None] = {}
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.machine = _machine_cpu()
        self.children = _children_cpu()
        self.sample()
        self.first = dict(self.last)

    def _kind(self, pid: str, comm: str, ppid: int) -> str | None:
        if self.service_pid in (int(pid), ppid):
            return "api"
        if comm == "postgres":
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                return None
            is_client = re.search(r"\(\d+\)", title) is not None  # "user database host(port) ..."
            return "postgres" if not is_client or f" {self.database} " in title else None
        return "redis" if comm.startswith("redis-server") else None

    def sample(self) -> None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or (stat := _stat(pid)) is None:
                continue
            if pid not in self.kinds:
                self.kinds[pid] = self._kind(pid, stat[0], stat[1])
            if self.kinds[pid]:
                self.last[pid] = stat[2]

    def per_request(self, requests: int, load_name: str) -> dict[str, float]:
        """Milliseconds of CPU per request by component, and how busy the machine was."""
        self.sample()
        spent: Counter[str] = Counter({"api": 0.0, "postgres": 0.0, "redis": 0.0})
        for pid, seconds in self.last.items():
            spent[self.kinds[pid]] += seconds - self.first.get(pid, 0.0)
        spent[load_name] = _children_cpu() - self.children
        busy, interrupts, total = (now - then for now, then in zip(_machine_cpu(), self.machine, strict=True))
        spent["interrupts"] = interrupts
        spent["other"] = max(0.0, busy - sum(spent.values()))
        per_request = {name: round(seconds * 1000 / max(requests, 1), 3) for name, seconds in spent.items()}
        per_request["machine_busy_share"] = round(busy / max(total, 1e-9), 3)
        return per_request


def db_counters(database_url: str) -> tuple[int, float]:
    """Connections opened to the database so far, and MB the checkpointer has written, as PostgreSQL
    counts them. A backend's count reaches the statistics a moment later (when it ends, at the
    latest), so this probe's own connection shows up in the next reading, not in this one."""
    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as conn:
        return conn.execute("""
            SELECT (SELECT sessions FROM pg_stat_database WHERE datname = current_database()),
                   buffers_checkpoint * current_setting('block_size')::float8 / 1048576
            FROM pg_stat_bgwriter""").fetchone()


# --------------------------------------------------------------------------- the service


class Service:
    """`checkin-offers serve` as deployed (uvicorn, uvloop, httptools, several workers) on loopback."""

    def __init__(
        self, env: dict[str, str], workers: int, log_path: Path, *, ready_states: tuple[str, ...] = ("ready",)
    ) -> None:
        self.database = make_url(env["CHECKIN_DATABASE_URL"]).database
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.workers = workers
        self.log_path = log_path
        self.ready_states = ready_states  # the /readyz statuses that count as started
        self.cwd = ROOT  # the tree it runs from
        self.argv = [
            str(VENV_BIN / "checkin-offers"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Service:
        with self.log_path.open("w") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.cwd,
            )
        deadline = time.monotonic() + 60
        answer = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited at start:\n{self.log_tail()}")
            try:
                ready = httpx.get(f"{self.base_url}/readyz", timeout=2)
                answer = ready.text
                if (
                    ready.status_code == 200
                    and ready.json()["status"] in self.ready_states
                    and len(self.worker_pids()) == self.workers
                ):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.__exit__()
        # /readyz says why (a drifted function, Redis down...); the log rarely does
        raise RuntimeError(f"the service was not ready within 60 s; /readyz: {answer}\n{self.log_tail()}")

    def __exit__(self, *_: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the server and its workers only
            self.proc.wait(timeout=10)

    def db_counters(self) -> tuple[int, float]:
        return db_counters(self.env["CHECKIN_DATABASE_URL"])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        """uvicorn's worker processes (multiprocessing spawns them; its resource tracker is not one)."""
        if self.workers == 1:
            return [self.pid]  # uvicorn serves in the process itself
        pids = []
        for pid in os.listdir("/proc"):
            if pid.isdigit() and (stat := _stat(pid)) and stat[1] == self.pid:
                try:
                    if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        pids.append(int(pid))
                except OSError:
                    continue
        return sorted(pids)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# --------------------------------------------------------------------------- wrk


@dataclass
class LoadResult:
    """One wrk or pgbench run. Latencies in milliseconds; cpu_ms per request by component."""

    name: str
    connections: int
    duration_s: float
    requests: int
    rps: float
    latency_ms: dict[str, float]
    offered_rps: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    socket_errors: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    cpu_ms: dict[str, float] = field(default_factory=dict)
    db_connections_opened: int | None = None  # new connections to the service's database during the run
    checkpoint_mb: float = 0.0  # what PostgreSQL's checkpointer wrote during the run (it competes for I/O)

    def errors(self, expected: set[int]) -> int:
        """Responses with an unexpected status, plus connections that failed or timed out."""
        unexpected = sum(n for status, n in self.statuses.items() if int(status) not in expected)
        return unexpected + sum(self.socket_errors.values())


def _run_bounded(
    cmd: list[str], *, duration_s: float, progress: Progress, label: str, meter: CpuMeter, **kwargs
) -> str:
    """Run a load tool for about duration_s, showing a progress bar and sampling CPU; kill it if it
    overstays."""
    task = progress.add_task(label, total=duration_s)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    started = time.monotonic()
    while proc.poll() is None:
        elapsed = time.monotonic() - started
        if elapsed > duration_s + GRACE_S:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"{cmd[0]} overstayed {duration_s + GRACE_S:.0f} s and was stopped")
        progress.update(task, completed=min(elapsed, duration_s))
        meter.sample()
        time.sleep(0.2)
    out, err = proc.communicate()
    progress.update(task, completed=duration_s, visible=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return out


def run_wrk(
    wrk: str,
    script: str,
    service: Service,
    *,
    name: str,
    connections: int,
    duration_s: int,
    progress: Progress,
    data: Path | None = None,
    rate: float = 0,
    offset: int = 0,
    timeout_s: int = 10,
) -> LoadResult:
    env = {
        **os.environ,
        "BENCH_RUN": f"r{time.time_ns()}",
        "BENCH_THREADS": "1",
        "BENCH_RATE": str(rate),
        "BENCH_OFFSET": str(offset),
    }
    if data is not None:
        env["BENCH_DATA"] = str(data)
    meter = CpuMeter(service.pid, service.database)
    sessions, checkpointed = service.db_counters()
    out = _run_bounded(
        [
            wrk,
            "-t",
            "1",
            "-c",
            str(connections),
            "-d",
            f"{duration_s}s",
            "--timeout",
            f"{timeout_s}s",
            "-s",
            script,
            service.base_url,
        ],
        duration_s=duration_s,
        progress=progress,
        label=name,
        meter=meter,
        cwd=BENCH_DIR,
        env=env,
    )
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out[-2000:]}")
    summary = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = summary["duration_us"] / 1e6
    latency = {f"p{k}": round(v / 1000, 2) for k, v in summary["latency_us"].items() if k not in ("mean", "max")}
    latency |= {
        "mean": round(summary["latency_us"]["mean"] / 1000, 2),
        "max": round(summary["latency_us"]["max"] / 1000, 2),
    }
    return LoadResult(
        name=name,
        connections=connections,
        duration_s=round(seconds, 2),
        requests=summary["requests"],
        rps=round(summary["requests"] / seconds, 1),
        latency_ms=latency,
        offered_rps=rate or None,
        statuses=summary["statuses"],
        labels=summary["labels"],
        socket_errors=summary["socket_errors"],
        sent=summary["sent"],
        cpu_ms=meter.per_request(summary["requests"], "wrk"),
        **_counters_since(service.env["CHECKIN_DATABASE_URL"], sessions, checkpointed),
    )


def _counters_since(database_url: str, sessions: int, checkpointed: float) -> dict:
    sessions_now, checkpointed_now = db_counters(database_url)
    return {
        "db_connections_opened": sessions_now - sessions - 1,  # less the probe before the run
        "checkpoint_mb": round(checkpointed_now - checkpointed, 1),
    }


# --------------------------------------------------------------------------- pgbench


def run_pgbench(
    pgbench: str,
    database_url: str,
    script: Path,
    *,
    name: str,
    clients: int,
    duration_s: int,
    variables: dict[str, object],
    progress: Progress,
    connect_each: bool = False,
    settings: dict[str, str] | None = None,
) -> LoadResult:
    """pgbench with prepared statements; connect_each: a new connection for every call (-C);
    settings: the sessions' settings (a search_path...), set as they connect (PGOPTIONS), so they cost
    no statement."""
    url = make_url(database_url)
    prefix = DATA_DIR / f"pgbench-{name}"
    for old in DATA_DIR.glob(f"{prefix.name}.*"):
        old.unlink()
    cmd = [
        pgbench,
        "-n",
        *(["-C"] if connect_each else []),
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        "1",
        "-T",
        str(duration_s),
        "-f",
        str(script),
        "-l",
        f"--log-prefix={prefix}",
        "-h",
        url.host or "127.0.0.1",
        "-p",
        str(url.port or 5432),
        "-U",
        url.username or "postgres",
    ]
    for key, value in variables.items():
        cmd += ["-D", f"{key}={value}"]
    env = {**os.environ}
    if url.password:
        env["PGPASSWORD"] = url.password
    if settings:
        env["PGOPTIONS"] = " ".join(f"-c {name}={value}" for name, value in settings.items())
    meter = CpuMeter(None, url.database)
    _, checkpointed = db_counters(database_url)
    out = _run_bounded([*cmd, url.database], duration_s=duration_s, progress=progress, label=name, meter=meter, env=env)
    checkpoint_mb = round(db_counters(database_url)[1] - checkpointed, 1)
    tps = float(re.search(r"tps = ([\d.]+) \(", out).group(1))
    processed = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", out)
    latencies_us = np.array(
        [int(line.split()[2]) for log in DATA_DIR.glob(f"{prefix.name}.*") for line in log.read_text().splitlines()],
        dtype=float,
    )
    latency = {f"p{p}": round(float(np.percentile(latencies_us, p)) / 1000, 2) for p in (50, 90, 95, 99, 99.9)}
    latency |= {"mean": round(float(latencies_us.mean()) / 1000, 2), "max": round(float(latencies_us.max()) / 1000, 2)}
    return LoadResult(
        name=name,
        connections=clients,
        duration_s=duration_s,
        requests=processed,
        rps=round(tps, 1),
        latency_ms=latency,
        socket_errors={"failed": int(failed.group(1)) if failed else 0},
        cpu_ms=meter.per_request(processed, "pgbench"),
        checkpoint_mb=checkpoint_mb,
    )


# --------------------------------------------------------------------------- py-spy


def start_profile(py_spy: str, pid: int, duration_s: int, output: Path) -> subprocess.Popen:
    """Sample one worker at 100 Hz without pausing it, only the thread holding the GIL (so waiting
    threads and the idle event loop drop out); raw output is collapsed stacks with counts."""
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(duration_s),
            "--rate",
            "100",
            "--format",
            "raw",
            "--output",
            str(output),
            "--nonblocking",
            "--gil",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _frame_package(frame: str) -> str:
    """'handle (/.../site-packages/sqlalchemy/engine/base.py:123)' -> 'sqlalchemy'."""
    path = frame[frame.rfind("(") + 1 :].split(":", 1)[0]
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if path.startswith(str(ROOT)):
        return "project:" + Path(path).relative_to(ROOT).parts[0]
    if "/lib/python3" in path:
        return "stdlib:" + path.split("/lib/python3", 1)[1].split("/", 2)[1].removesuffix(".py")
    return path or "?"


def _short(frame: str, *, line: bool = True) -> str:
    """'f (/abs/.../site-packages/pkg/mod.py:12)' -> 'f (pkg/mod.py:12)', or without the line."""
    function, _, where = frame.rpartition(" (")
    path, _, number = where.rstrip(")").partition(":")
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif path.startswith(str(ROOT)):
        path = str(Path(path).relative_to(ROOT))
    elif "/lib/python3" in path:
        path = path.split("/lib/python3", 1)[1].split("/", 2)[2]
    return f"{function} ({path}:{number})" if line else f"{function} ({path})"


# Frames whose whole share (anywhere on the stack) the report quotes.
PROFILE_FOCUS = (
    "solve_dependencies (fastapi/dependencies/utils.py)",
    "verify_token (core/auth.py)",
    "run_in_threadpool (starlette/concurrency.py)",
    "check_in (offers/checkin.py)",
    "AsyncConnection.execute (sqlalchemy/ext/asyncio/engine.py)",
    "AbstractConnection._send_packed_command (redis/asyncio/connection.py)",
    "RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py)",
    "serialize_response (fastapi/routing.py)",
)


def summarize_profile(path: Path, duration_s: int, rate_hz: int = 100, top: int = 12) -> dict:
    """Where one worker spent its GIL: by package of the innermost Python frame, the hottest innermost
    frames, and the hottest frames anywhere on the stack. busy_share: how much of the time it held it."""
    leaf_package: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        total += n
        leaf[_short(frames[-1])] += n
        leaf_package[_frame_package(frames[-1])] += n
        for frame in {_short(f, line=False) for f in frames}:
            inclusive[frame] += n

    def share(counter: Counter[str]) -> list[dict]:
        return [{"frame": k, "share": round(v / max(total, 1), 3)} for k, v in counter.most_common(top)]

    focus = {frame: round(inclusive[frame] / max(total, 1), 3) for frame in PROFILE_FOCUS}
    return {
        "samples": total,
        "busy_share": round(total / (duration_s * rate_hz), 3),
        "by_package": share(leaf_package),
        "self": share(leaf),
        "inclusive": share(inclusive),
        "focus": focus,
    }
