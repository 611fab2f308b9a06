"""A throwaway PostgreSQL cluster: initdb in a temporary folder, start on a free port, stop and
delete at the end. Used by the test fixtures and the benchmarks; never by the service."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

def _version_key(directory: Path) -> tuple[int, ...]:
    digits = "".join(ch if ch.isdigit() else " " for ch in str(directory)).split()
    return tuple(int(d) for d in digits) or (0,)


def candidate_bin_dirs() -> list[Path]:
    """Where PostgreSQL's server programs may be, newest version first: Debian/Ubuntu
    (/usr/lib/postgresql/<version>/bin), RHEL/Fedora (/usr/pgsql-<version>/bin), Homebrew, what
    ``pg_config --bindir`` says, and the folder of ``initdb`` on PATH."""
    found: list[Path] = []
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/opt/homebrew/opt/postgresql@*/bin",
                    "/usr/local/opt/postgresql@*/bin"):
        found += sorted((p for p in Path("/").glob(pattern.lstrip("/"))), key=_version_key, reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            found.append(Path(out))
    on_path = shutil.which("initdb")
    if on_path:
        found.append(Path(on_path).parent)
    return list(dict.fromkeys(found))


def find_bin_dir() -> Path | None:
    """The folder of initdb and pg_ctl. ``CDP_PG_BIN``, when set, is the only place looked at."""
    explicit = os.environ.get("CDP_PG_BIN", "").strip()
    if explicit:
        return Path(explicit) if (Path(explicit) / "initdb").exists() else None
    for directory in candidate_bin_dirs():
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    directory: Path
    port: int
    bin_dir: Path
    as_user: str | None
    options: str = ""

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = list(args)
        if self.as_user:
            command = ["runuser", "-u", self.as_user, "--"] + command
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def create_database(self, name: str) -> str:
        self._run(str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def halt(self) -> None:
        """Stop the server at once (as a crash would: `-m immediate`), keeping its data."""
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "immediate", "-w", "stop")

    def resume(self) -> None:
        """Start the server again after :meth:`halt`, on the same port and data (it recovers from its WAL)."""
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.directory / "data"), "-w", "-l",
                  str(self.directory / "log"), "-o", self.options, "start")

    def stop(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "immediate", "-w",
                  "stop", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_cluster(*, fsync: bool = False, extra_options: str = "") -> Cluster:
    """Start a new cluster; raises RuntimeError (with the reason) when PostgreSQL is not available."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        where = (f"CDP_PG_BIN={os.environ['CDP_PG_BIN']}" if os.environ.get("CDP_PG_BIN", "").strip()
                 else "/usr/lib/postgresql/*/bin, /usr/pgsql-*/bin, pg_config --bindir, PATH")
        raise RuntimeError(f"PostgreSQL server programs (initdb, pg_ctl) not found in {where}")
    directory = Path(tempfile.mkdtemp(prefix="cdp-pg-"))
    as_user = None
    if os.geteuid() == 0:  # initdb refuses to run as root
        as_user = "postgres"
        shutil.chown(directory, user="postgres")
    port = _free_port()
    options = (f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 "
               f"-c fsync={'on' if fsync else 'off'} -c synchronous_commit=off -c full_page_writes=off "
               f"-c timezone=UTC {extra_options}")
    cluster = Cluster(directory, port, bin_dir, as_user, options)
    data = directory / "data"
    try:
        cluster._run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync",
                     "-E", "UTF8", "--locale=C.UTF-8")
        cluster.resume()
    except subprocess.CalledProcessError as exc:
        log = (directory / "log").read_text() if (directory / "log").exists() else ""
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {exc.stderr or exc.stdout}\n{log}") from exc
    return cluster
