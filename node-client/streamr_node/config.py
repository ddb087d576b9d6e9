"""The node's settings: a file written by ``join``, overridden by environment and flags.

Precedence, lowest first: defaults, the config file, ``STREAMR_NODE_*`` environment variables,
command-line flags. The file holds the node token, so it is written readable by its owner only
and the token is never printed or logged.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr, ValidationError, field_validator

CONFIG_FILE = "config.toml"
ENV_PREFIX = "STREAMR_NODE_"


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and what to do."""


def default_data_dir() -> Path:
    """Where the config file and the unsent usage reports live, per platform convention."""
    if "STREAMR_NODE_DATA_DIR" in os.environ:
        return Path(os.environ["STREAMR_NODE_DATA_DIR"]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "streamr-node"


class NodeConfig(BaseModel):
    model_config = {"extra": "forbid", "validate_assignment": True}

    coordinator_url: AnyHttpUrl | None = Field(default=None, description="From join")
    node_id: str | None = Field(default=None, max_length=64)
    node_token: SecretStr | None = None
    stream: str | None = Field(default=None, max_length=64)
    name: str = Field(default="node", min_length=1, max_length=64)
    host: str = Field(default="0.0.0.0", description="Address to listen on")  # noqa: S104
    port: int = Field(default=8090, ge=0, le=65535, description="0 picks a free port")
    public_url: AnyHttpUrl | None = Field(
        default=None, description="Where viewers reach this node (router address and port)"
    )
    egress_cap_mbps: float | None = Field(
        default=None, gt=0, le=100_000, description="Above this, viewers get 503 and move on"
    )
    list_size: int = Field(default=6, ge=3, le=30, description="Segments listed in the playlist")
    keep_extra: int = Field(
        default=6, ge=0, le=60, description="Segments kept after leaving the playlist"
    )
    max_fetches: int = Field(default=4, ge=1, le=32, description="Concurrent upstream fetches")
    poll_interval_s: float = Field(default=0.2, ge=0.05, le=10)
    upnp: bool = Field(default=False, description="Ask the router to forward the port (UPnP)")
    log_level: str = "INFO"
    data_dir: Path = Field(default_factory=default_data_dir, exclude=True)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("use DEBUG, INFO, WARNING or ERROR")
        return value

    @property
    def joined(self) -> bool:
        return bool(self.coordinator_url and self.node_id and self.node_token)

    @property
    def config_path(self) -> Path:
        return self.data_dir / CONFIG_FILE

    @property
    def egress_cap_bps(self) -> int | None:
        return None if self.egress_cap_mbps is None else int(self.egress_cap_mbps * 1_000_000)

    def require_joined(self) -> None:
        if not self.joined:
            raise ConfigError(
                f"this node has not joined a stream yet (no node token in {self.config_path}); "
                "run: streamr-node join COORDINATOR_URL --invite CODE"
            )


_FIELDS = [name for name in NodeConfig.model_fields if name != "data_dir"]


def _env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in _FIELDS:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = raw
    return values


def load(
    data_dir: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> NodeConfig:
    """Defaults < file < environment < ``overrides`` (the command-line flags that were given)."""
    environ = os.environ if environ is None else environ
    data_dir = data_dir or default_data_dir()
    path = data_dir / CONFIG_FILE
    values: dict[str, Any] = {}
    if path.exists():
        try:
            values.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid TOML ({exc}); fix it or remove it") from None
    values.update(_env_values(environ))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return NodeConfig(data_dir=data_dir, **values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"setting {field!r} is invalid: {first['msg']} "
            f"(from flags, {ENV_PREFIX}{field.upper()} or {path})"
        ) from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def save(config: NodeConfig) -> Path:
    """Write the file (owner-only: it holds the node token), replacing it atomically."""
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = ["# Written by `streamr-node join`. Holds this node's secret token: keep it private."]
    for name in _FIELDS:
        value = getattr(config, name)
        if value is None or value == NodeConfig.model_fields[name].default:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        lines.append(f"{name} = {_toml_value(value)}")
    path = config.config_path
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(temporary, path)
    return path
