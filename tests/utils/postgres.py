"""A throw-away PostgreSQL cluster for tests: ``initdb`` + ``pg_ctl`` on a free loopback port.

Debian's ``postgresql`` package (``/usr/lib/postgresql/<major>/bin``) provides the binaries;
``scripts/test`` installs it when missing. PostgreSQL refuses to run as root, so when the
tests run as root the cluster belongs to the ``postgres`` user (``runuser -u postgres``) and
lives in a folder of its own under the system temp folder (pytest's ``tmp_path`` is root's
alone). Durability is off (``fsync``, ``synchronous_commit``, ``full_page_writes``): the
cluster is deleted when the session ends.

Usage::

    with PostgresCluster() as cluster:
        url = cluster.create_database()   # postgresql+psycopg://postgres@127.0.0.1:PORT/db_1
        ...
        cluster.recycle_database(url)     # emptied (new public schema), handed out again

``CREATE DATABASE`` takes 0.2-0.8 s on a busy 2-core machine; emptying a used database
(its sessions ended, ``DROP SCHEMA public CASCADE``) takes ~0.04 s, so databases are reused.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from emaboard_server.local_server import free_port

SUPERUSER = "postgres"
FAST_SETTINGS = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                 "-c max_connections=300")


def postgres_bindir() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``: ``$PG_BINDIR``, Debian's newest major, or PATH.

    Raises:
        RuntimeError: PostgreSQL's server binaries are not installed, naming the remedy.
    """
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                    key=lambda p: int(Path(p).parts[-3]))
    if debian:
        return Path(debian[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL's initdb was not found: apt-get install -y postgresql "
                       "(./scripts/test does), or set PG_BINDIR to the folder holding initdb")


class PostgresCluster:
    """One PostgreSQL server on 127.0.0.1:<free port>, its data in a temporary folder."""

    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="emaboard-pg-"))
        self.data = self.root / "data"
        self._as_postgres = os.geteuid() == 0
        self._names = itertools.count(1)
        self._free: list[str] = []
        if self._as_postgres:
            shutil.chown(self.root, SUPERUSER)

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", SUPERUSER, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            log = self.root / "log"
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout}{result.stderr}{tail}")

    def start(self) -> PostgresCluster:
        """``initdb`` (trust authentication) and ``pg_ctl start``, waiting until it accepts."""
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", SUPERUSER,
                  "-E", "UTF8", "--no-sync")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   f"{FAST_SETTINGS}")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"),
                  "-w", "start")
        return self

    def stop(self) -> None:
        """Stop the server (immediately: nothing in it is kept) and remove its folder."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` (psycopg 3 driver)."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run statements as the superuser on ``database`` (autocommit)."""
        import psycopg

        conninfo = f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(sql)  # type: ignore[arg-type]

    def create_database(self) -> str:
        """An empty database (a recycled one, or a new one); return its URL."""
        if self._free:
            return self.url(self._free.pop())
        name = f"db_{next(self._names)}"
        self.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def recycle_database(self, url: str) -> None:
        """End every session on the database of ``url``, empty it (a new ``public`` schema)
        and keep it for :meth:`create_database`."""
        name = url.rsplit("/", 1)[1]
        self.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
        self.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public", database=name)
        self._free.append(name)

    def __enter__(self) -> PostgresCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
