"""What the load benchmark reads around its measured window: CPU per process (from /proc),
PostgreSQL's statistics (psql) and Redis's (INFO)."""

from __future__ import annotations

import os
import subprocess
from collections import defaultdict
from pathlib import Path

import redis

TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- CPU


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            children[int(fields[1])].append(int(entry))
    return children


def tree_cpu_s(pid: int, children: dict[int, list[int]] | None = None) -> float:
    """CPU seconds (user + system) of ``pid`` and every descendant, including the children each
    has reaped (so PostgreSQL backends or nginx workers that exited still count)."""
    children = _children() if children is None else children
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        fields = _stat(current)
        if fields is not None:
            # utime, stime, cutime, cstime; a reaped child is no longer in the tree, so its
            # CPU is counted once, in its parent's cutime/cstime.
            total += sum(int(x) for x in fields[11:15])
        stack.extend(children.get(current, ()))
    return total / TICKS


def cpu_snapshot(pids: dict[str, list[int]]) -> dict[str, float]:
    children = _children()
    return {name: sum(tree_cpu_s(p, children) for p in group) for name, group in pids.items()}


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields[:8]) - idle, sum(fields[:8])


# ---------------------------------------------------------------- PostgreSQL


class PostgresStats:
    """Transactions, tuples, statements (pg_stat_statements, when the server preloads it) and
    per-table row activity of one database."""

    def __init__(self, database_url: str) -> None:
        # psql takes a libpq URI; SQLAlchemy's driver suffix is not part of one.
        _scheme, rest = database_url.split("://", 1)
        self.uri = "postgresql://" + rest
        self.statements = self._try("CREATE EXTENSION IF NOT EXISTS pg_stat_statements") and (
            self._try("SELECT count(*) FROM pg_stat_statements")
        )

    def _psql(self, sql: str) -> str:
        result = subprocess.run(
            ["psql", self.uri, "-XAtqF", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    def _try(self, sql: str) -> bool:
        try:
            self._psql(sql)
        except RuntimeError:
            return False
        return True

    def snapshot(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        row = self._psql(
            "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, "
            "tup_updated, tup_deleted, blks_read, blks_hit FROM pg_stat_database "
            "WHERE datname = current_database()"
        ).split()
        names = "xact_commit xact_rollback tup_returned tup_fetched tup_inserted tup_updated "
        names += "tup_deleted blks_read blks_hit"
        out["database"] = dict(zip(names.split(), map(int, row), strict=True))
        out["tables"] = {}
        for line in self._psql(
            "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del, seq_scan, "
            "coalesce(idx_scan, 0) FROM pg_stat_user_tables"
        ).splitlines():
            name, writes, seq, idx = line.split("\t")
            out["tables"][f"{name} writes"] = int(writes)
            out["tables"][f"{name} scans"] = int(seq) + int(idx)
        out["statements"] = {}
        if self.statements:
            for line in self._psql(
                "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 140), calls, "
                "round(total_exec_time * 1000) FROM pg_stat_statements WHERE dbid = (SELECT oid "
                "FROM pg_database WHERE datname = current_database()) "
                "AND query NOT ILIKE '%pg_stat%'"
            ).splitlines():
                query, calls, micros = line.rsplit("\t", 2)
                out["statements"][query] = int(calls)
                out["statements"][f"{query}\ttime_us"] = int(float(micros))
        out["connections"] = {
            "now": int(
                self._psql(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                ).strip()
            )
        }
        return out


# ---------------------------------------------------------------- Redis


class RedisStats:
    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)

    def snapshot(self) -> dict[str, float]:
        info = self.client.info("all")
        out: dict[str, float] = {
            "commands": info["total_commands_processed"],
            "ops_per_sec_now": info["instantaneous_ops_per_sec"],
            "cpu_s": info["used_cpu_sys"] + info["used_cpu_user"],
            "clients": info["connected_clients"],
            "memory_bytes": info["used_memory"],
        }
        for key, value in info.items():
            if key.startswith("cmdstat_") and isinstance(value, dict):
                out[f"cmd {key[8:]}"] = value["calls"]
                out[f"cmd {key[8:]} usec"] = value["usec"]
        return out
