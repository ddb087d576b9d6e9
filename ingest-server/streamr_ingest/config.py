"""The ingest's one typed settings object.

Values come, in rising precedence, from the defaults below (one machine: everything on
127.0.0.1, files under ``./data/ingest``), a YAML file (``--config`` or ``STREAMR_INGEST_CONFIG``;
``ingest-server/ingest_config.yaml`` lists every key), and ``STREAMR_INGEST_<KEY>`` environment
variables. ``data_dir`` also follows the coordinator's ``STREAMR_DATA_DIR`` so that the two,
started from the same environment, share the secret file without any configuration.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from streamr_protocol.ingest import SECRET_FILE_NAME, check_secret, read_or_create_secret

ENV_PREFIX = "STREAMR_INGEST_"
SOURCE_DIR = Path(__file__).resolve().parents[1]  # ingest-server/


class ConfigError(Exception):
    """A setting is wrong; the message names it and says what is expected."""


class IngestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(
        default=Path("./data"), description="Shared with the coordinator; holds ingest-secret"
    )
    work_dir: Path | None = Field(
        default=None, description="nginx prefix: config, logs, HLS; unset means <data_dir>/ingest"
    )
    rtmp_host: str = Field(default="127.0.0.1", description="Where OBS connects; 0.0.0.0 for all")
    rtmp_port: int = Field(default=1935, ge=1, le=65535)
    http_host: str = Field(default="127.0.0.1", description="HLS origin address; 0.0.0.0 for all")
    http_port: int = Field(default=8080, ge=1, le=65535, description="HLS origin port")
    hook_port: int = Field(
        default=8081, ge=1, le=65535, description="Loopback-only hook proxy and rtmp_stat"
    )
    fragment_s: float = Field(default=2.0, ge=1, le=10, description="HLS fragment length")
    playlist_segments: int = Field(default=6, ge=6, le=60, description="Segments in the playlist")
    retention_s: float = Field(
        default=30.0, ge=0, le=86_400, description="Kept on disk this long after leaving the list"
    )
    coordinator_url: str = Field(default="http://127.0.0.1:8000")
    secret: SecretStr | None = Field(
        default=None, description="Shared with the coordinator; unset means the secret file"
    )
    secret_file: Path | None = Field(
        default=None, description="Unset means <data_dir>/ingest-secret (created if missing)"
    )
    poll_interval_s: float = Field(
        default=0.05, ge=0.005, le=2, description="How often playlists are checked for changes"
    )
    reconcile_interval_s: float = Field(
        default=5.0, ge=0.2, le=300, description="How often publishing streams are synced"
    )
    idle_publisher_timeout_s: int = Field(
        default=10, ge=1, le=600, description="A publisher sending nothing is dropped after this"
    )
    worker_connections: int = Field(default=1024, ge=64, le=65_535)
    nginx_binary: Path = Field(default=Path("/usr/sbin/nginx"))
    nginx_modules_dir: Path = Field(default=Path("/usr/lib/nginx/modules"))
    nginx_template: Path = Field(default=SOURCE_DIR / "nginx.conf")
    log_level: str = "INFO"

    @field_validator("rtmp_host", "http_host")
    @classmethod
    def _ip_literal(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError("must be an IP address such as 127.0.0.1 or 0.0.0.0") from None
        return value

    @field_validator("coordinator_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL such as http://127.0.0.1:8000")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must be a plain base URL: no query, fragment or credentials")
        return value.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return value

    @model_validator(mode="after")
    def _distinct_ports(self) -> IngestSettings:
        seen: dict[int, str] = {}
        for name in ("rtmp_port", "http_port", "hook_port"):
            port = getattr(self, name)
            if port in seen:
                raise ValueError(f"{name} and {seen[port]} are both {port}; each needs its own")
            seen[port] = name
        return self

    # ------------------------------------------------------------ derived

    @property
    def prefix(self) -> Path:
        """nginx's prefix directory (absolute): everything the ingest writes lives below it."""
        return (self.work_dir or self.data_dir / "ingest").resolve()

    @property
    def hls_dir(self) -> Path:
        return self.prefix / "hls"

    @property
    def conf_path(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def secret_path(self) -> Path:
        return (self.secret_file or self.data_dir / SECRET_FILE_NAME).resolve()

    @property
    def window_s(self) -> float:
        return self.fragment_s * self.playlist_segments

    @property
    def relay_base(self) -> str:
        """Where the authorize hook sends a stream on to: the HLS application, over loopback."""
        return f"rtmp://127.0.0.1:{self.rtmp_port}/hls"

    @property
    def hook_base(self) -> str:
        return f"http://127.0.0.1:{self.hook_port}"

    @property
    def stat_url(self) -> str:
        return f"{self.hook_base}/stat"

    @property
    def origin_url(self) -> str:
        return f"http://{_url_host(self.http_host)}:{self.http_port}"

    @property
    def rtmp_url(self) -> str:
        """The OBS 'Server' for streamers on this machine."""
        return f"rtmp://{_url_host(self.rtmp_host)}:{self.rtmp_port}/live"

    def resolve_secret(self) -> str:
        """The shared ingest secret: the setting, else the secret file (created if missing)."""
        if self.secret is not None:
            return check_secret(self.secret.get_secret_value(), f"{ENV_PREFIX}SECRET")
        return read_or_create_secret(self.secret_path)

    def describe(self) -> dict[str, Any]:
        """Every setting, secret masked, with the derived paths: safe to print at start-up."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "(set)"
            elif name == "secret":
                value = f"(from {self.secret_path})"
            elif isinstance(value, Path):
                value = str(value)
            shown[name] = value
        shown["work_dir"] = str(self.prefix)
        shown["secret_file"] = str(self.secret_path)
        shown |= {"obs_server": self.rtmp_url, "origin": f"{self.origin_url}/hls/<stream>/"}
        return shown


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):  # noqa: S104 - only turning a wildcard into a reachable host
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def load_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> IngestSettings:
    """Defaults, then the YAML file, then the environment; a bad value is one ConfigError."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if config_file is None and environ.get(f"{ENV_PREFIX}CONFIG"):
        config_file = Path(environ[f"{ENV_PREFIX}CONFIG"])
    if config_file is not None:
        values |= _read_yaml(config_file)
    if environ.get("STREAMR_DATA_DIR"):
        values["data_dir"] = environ["STREAMR_DATA_DIR"]
    for name in IngestSettings.model_fields:
        if f"{ENV_PREFIX}{name.upper()}" in environ:
            values[name] = environ[f"{ENV_PREFIX}{name.upper()}"]
    try:
        return IngestSettings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if not field:
            raise ConfigError(f"ingest settings: {message}") from exc
        raise ConfigError(
            f"setting {field} ({ENV_PREFIX}{field.upper()} or '{field}' in the config file) "
            f"is invalid: {message}"
        ) from exc


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must be a mapping of setting: value")
    unknown = sorted(set(loaded) - set(IngestSettings.model_fields))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) {', '.join(map(str, unknown))}; "
            f"known: {', '.join(IngestSettings.model_fields)}"
        )
    return loaded
