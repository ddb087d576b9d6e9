"""The coordinator's one typed settings object.

Values come, in rising precedence, from the defaults below (one machine: SQLite under the data
directory, no Redis), an optional TOML file named by ``STREAMR_CONFIG_FILE``, and ``STREAMR_*``
environment variables.
"""

from __future__ import annotations

import os
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STREAMR_", extra="forbid")

    data_dir: Path = Field(default=Path("./data"), description="Where SQLite and keys live")
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL; unset means SQLite in the data directory"
    )
    redis_url: SecretStr | None = Field(default=None, description="Unset means in-process state")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str | None = Field(
        default=None, description="How others reach this coordinator; printed in hints"
    )
    ingest_rtmp_url: str = Field(
        default="rtmp://127.0.0.1:1935/live", description="The OBS 'Server' shown to streamers"
    )
    auto_migrate: bool | None = Field(
        default=None, description="Upgrade the schema on start; default: only with SQLite"
    )
    log_level: str = "INFO"
    web_assets_dir: Path = Field(
        default=Path(__file__).resolve().parents[2] / "node_modules",
        description="npm packages the coordinator serves to browsers (Swagger UI, hls.js)",
    )

    jwt_private_key: SecretStr | None = Field(
        default=None, description="PEM Ed25519 key; unset means a key file in the data directory"
    )
    access_token_ttl_s: int = Field(default=900, ge=30, le=86_400)
    refresh_token_ttl_s: int = Field(default=30 * 86_400, ge=300)

    ingest_secret: SecretStr | None = Field(
        default=None, description="Shared with the ingest; unset means <data_dir>/ingest-secret"
    )
    attestation_private_key: SecretStr | None = Field(
        default=None, description="PEM Ed25519 key that signs segments; unset: a file in data dir"
    )
    publish_failures_per_minute: int = Field(
        default=10, ge=1, description="Refused publishes per address per minute before 429"
    )
    segment_retention_s: float = Field(
        default=3600, ge=60, description="How long segment records are kept before pruning"
    )
    stale_after_s: float = Field(
        default=86_400, gt=0, description="OFFLINE this long becomes STALE"
    )
    archive_after_s: float = Field(
        default=30 * 86_400, gt=0, description="STALE this long becomes ARCHIVED"
    )
    run_background_jobs: bool = Field(
        default=True,
        description="Run the worker's jobs in this process (one-machine mode); false on "
        "replicas when `streamr worker` processes run them",
    )

    heartbeat_interval_s: float = Field(default=5.0, gt=0, le=300)
    presence_ttl_s: float = Field(default=15.0, gt=0, le=3600)
    node_token_cache_ttl_s: float = Field(
        default=10.0, ge=0, le=300, description="How long a replica trusts a node token lookup"
    )

    origin_url: str = Field(
        default="http://127.0.0.1:8080",
        description="Public base URL of the HLS origin; playlists are at /hls/<stream>/index.m3u8",
    )
    origin_fanout: int = Field(
        default=4,
        ge=1,
        le=1000,
        description="Nodes per stream that pull from the origin; each node feeds at most this many",
    )
    allow_private_node_urls: bool = Field(
        default=False,
        description="Let reachability checks connect to loopback and private addresses (one "
        "machine, tests); off in production, where it would let nodes probe the internal network",
    )
    usage_report_interval_s: float = Field(default=10, gt=0, le=3600)
    assignment_refresh_s: float = Field(default=10, gt=0, le=3600)
    viewer_session_ttl_s: float = Field(default=6 * 3600, ge=60, le=7 * 86_400)
    viewer_sessions_per_minute: int = Field(
        default=30, ge=1, description="Viewer sessions a client address may open per minute"
    )
    viewer_flag_s: float = Field(
        default=300,
        ge=0,
        le=86_400,
        description="How long a node stays out of viewer routing after a probe confirmed a "
        "viewer's report of a segment that did not match its signature (or viewers of two "
        "sessions reported one)",
    )
    routing_inputs_ttl_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How long a replica reuses a stream's routing inputs (its nodes, their load "
        "and signals) for the sessions that open meanwhile; 0 gathers them for every session",
    )
    reachability_timeout_s: float = Field(default=3, gt=0, le=60)

    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Login/registration attempts per address per minute before 429.
    auth_attempts_per_minute: int = Field(default=30, ge=1)
    cdn_price_micro_usd_per_gb: int = Field(
        default=20_000,
        ge=0,
        le=1_000_000_000,
        description="What a CDN would charge per GB (10^9 bytes) delivered, in millionths of a "
        "US dollar (20000 = $0.02); the dashboards' 'money saved' by friend nodes",
    )

    # --- worker jobs (jobs/) ---
    worker_jobs: str | None = Field(
        default=None,
        description="Comma-separated job names this process runs (`streamr worker --jobs` "
        "overrides); unset means every job of the catalog",
    )
    worker_stop_grace_s: float = Field(
        default=10, ge=0, le=600, description="How long a stopping worker lets a running job end"
    )
    presence_reaper_interval_s: float = Field(
        default=5,
        gt=0,
        le=3600,
        description="How often the last beat of nodes that stopped beating is recorded: the "
        "run in the last 1.2 intervals of a stopped node's presence records it exactly (keep "
        "the presence TTL minus 1.2 intervals above 1.5 heartbeat intervals)",
    )
    stats_interval_s: float = Field(
        default=60, gt=0, le=86_400, description="How often each online node's /stats is fetched"
    )
    stats_timeout_s: float = Field(default=3, gt=0, le=60, description="Per /stats fetch")
    stats_concurrency: int = Field(default=16, ge=1, le=1000, description="/stats fetches at once")
    stream_timers_interval_s: float = Field(
        default=30, gt=0, le=86_400, description="How often OFFLINE/STALE streams are aged"
    )
    rollup_interval_s: float = Field(
        default=300, gt=0, le=86_400, description="How often the hourly usage roll-ups are updated"
    )
    rollup_lookback_s: float = Field(
        default=3 * 3600,
        ge=3600,
        le=7 * 86_400,
        description="How far back each roll-up recomputes hours (late reports and receipts)",
    )
    retention_interval_s: float = Field(
        default=600, gt=0, le=86_400, description="How often old records are pruned"
    )
    usage_retention_s: float = Field(
        default=35 * 86_400,
        ge=86_400,
        description="How long usage reports and viewer receipts are kept (hourly roll-ups stay)",
    )
    node_stats_retention_s: float = Field(
        default=2 * 86_400, ge=3600, description="How long /stats snapshots of nodes are kept"
    )
    job_run_retention_s: float = Field(
        default=7 * 86_400, ge=3600, description="How long records of job runs are kept"
    )
    job_runs_kept: int = Field(
        default=1000, ge=10, le=1_000_000, description="Job runs kept per job, at most"
    )

    # --- verification: probes, reconciliation, trust (verification/) ---
    network_hash_key: SecretStr | None = Field(
        default=None,
        description="Key of the viewer/node network hashes (HMAC of the /24 or /48; no address "
        "is stored); unset means <data_dir>/network-hash-key",
    )
    probe_interval_s: float = Field(
        default=120,
        gt=0,
        le=86_400,
        description="Mean time between two probes of one node; the times are random "
        "(exponential), so a node cannot predict them",
    )
    probe_segments: int = Field(
        default=4,
        ge=1,
        le=30,
        description="Segments one probe session fetches in a row, like a viewer that watches a "
        "little while",
    )
    probe_concurrency: int = Field(default=8, ge=1, le=1000, description="Probes at once")
    targeted_probes_per_minute: int = Field(
        default=2,
        ge=0,
        le=60,
        description="Probes of one node that viewers' mismatch receipts may trigger per minute",
    )
    reconcile_interval_s: int = Field(
        default=60, ge=10, le=3600, description="Length of a reconciliation interval (UTC-aligned)"
    )
    reconcile_catchup_window_s: int = Field(
        default=3600,
        ge=0,
        le=86_400,
        description=(
            "A backlog of intervals (a worker that was down) is reconciled in windows up to "
            "this long, one verdict per node a window; 0 = interval by interval"
        ),
    )
    reconcile_grace_s: float = Field(
        default=30,
        ge=0,
        le=3600,
        description="How long after an interval ends it is reconciled (late reports, receipts)",
    )
    verification_jobs_interval_s: float = Field(
        default=15,
        gt=0,
        le=3600,
        description="How often the reconciliation, trust and accrual jobs look for new work",
    )
    trust_vetting_min_probes: int = Field(
        default=10, ge=0, description="Passed probes before a new node leaves vetting"
    )
    trust_vetting_min_s: float = Field(
        default=3600, ge=0, description="Time since first seen before a node leaves vetting"
    )
    trust_warning_grace_s: float = Field(
        default=3600, ge=0, description="Time between a trust warning and any penalty"
    )
    trust_half_life_s: float = Field(
        default=3 * 86_400, gt=0, description="Half-life of trust evidence (decay to the prior)"
    )

    # --- economics and payouts (payouts/) ---
    # The operator's terms until the first version is set through the admin API (then the
    # latest version in the database wins). Bounds are those of payouts.economics.LIMITS.
    rate_micro_usd_per_gb: int = Field(
        default=50_000,
        ge=0,
        le=10_000_000,
        description="Friends' pay per GB (10^9 bytes) of verified delivery, in micro-USD "
        "(50000 = $0.05), before the platform fee",
    )
    platform_fee_bps: int = Field(
        default=1_000, ge=0, le=10_000, description="Platform fee in basis points (1000 = 10 %)"
    )
    minimum_payout_micro_usd: int = Field(
        default=1_000_000,
        ge=0,
        le=1_000_000_000,
        description="Smaller balances carry over to the next payout period (1000000 = $1)",
    )
    vetting_pay_bps: int = Field(
        default=5_000, ge=0, le=10_000, description="Pay of a node in vetting (5000 = half)"
    )
    payout_period_s: int = Field(
        default=86_400,
        ge=60,
        le=366 * 86_400,
        description="Length of a payout period, aligned to the Unix epoch (86400 = UTC days)",
    )
    # --- payout cycle job (fault tests shorten these; issue 7) ---
    payout_cycle_interval_s: float = Field(
        default=60, gt=0, le=86_400, description="How often the payout cycle looks for work"
    )
    payout_cycle_lease_s: float = Field(
        default=120,
        ge=1,
        le=3600,
        description="How soon another worker takes the payout cycle over after its worker died",
    )

    # --- production: replicas behind a load balancer (cluster/) ---
    trusted_proxies: str = Field(
        default="*",
        description="With `streamr coordinator --behind-proxy`: the addresses (comma-separated; "
        "networks like 10.0.0.0/8 too) whose X-Forwarded-For is believed; '*' trusts any, "
        "right only when nothing but the load balancer can reach the replica",
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("log_level must be one of DEBUG, INFO, WARNING, ERROR")
        return value

    @field_validator("origin_url")
    @classmethod
    def _http_origin(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number in range
        except ValueError:
            parts = parts._replace(scheme="")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("origin_url must be an http:// or https:// URL, e.g. http://host:8080")
        # Paths are appended to it ("/hls/..."), so a trailing slash would double up.
        return urlunsplit(parts).rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlFileSource(settings_cls))

    @cached_property
    def sqlalchemy_url(self) -> str:
        if self.database_url is not None:
            return _async_driver(self.database_url.get_secret_value())
        return f"sqlite+aiosqlite:///{(self.data_dir / 'coordinator.sqlite3').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    @property
    def should_auto_migrate(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    def prepare_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def describe(self) -> dict[str, Any]:
        """Every setting with secrets masked: safe to print at start-up."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "database_url":
                value = make_url(self.sqlalchemy_url).render_as_string(hide_password=True)
            elif name == "redis_url" and value is not None:
                value = make_url(value.get_secret_value()).render_as_string(hide_password=True)
            elif name == "origin_url":
                value = _without_password(value)
            elif isinstance(value, SecretStr):
                value = "(set)"
            elif isinstance(value, Path):
                value = str(value)
            shown[name] = value
        return shown


def _without_password(url: str) -> str:
    """A URL as it may be printed: a password in it (http://user:pass@host) is masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))


def _async_driver(url: str) -> str:
    """Accept the URLs people usually write and pick the async driver for them."""
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


class _TomlFileSource(PydanticBaseSettingsSource):
    """Reads the file named by STREAMR_CONFIG_FILE, if any; keys are the setting names."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = os.environ.get("STREAMR_CONFIG_FILE")
        self._values: dict[str, Any] = {}
        if path:
            try:
                with open(path, "rb") as handle:
                    self._values = tomllib.load(handle)
            except OSError as exc:
                raise ValueError(f"STREAMR_CONFIG_FILE {path!r} cannot be read: {exc}") from exc
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"STREAMR_CONFIG_FILE {path!r} is not valid TOML: {exc}") from exc

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)
