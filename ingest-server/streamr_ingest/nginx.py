"""Debian's nginx with libnginx-mod-rtmp, run as a child process from a rendered configuration.

Nothing of the system's nginx is used or changed: the configuration, pid file, temporary
directories and HLS output all live below the ingest's work directory (nginx's ``-p`` prefix),
and errors go to nginx's stderr, which the runner reads line by line (with stream keys hidden).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import grp
import logging
import os
import pwd
import re
import signal
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

from .config import ENV_PREFIX, ConfigError, IngestSettings

log = logging.getLogger("streamr.ingest.nginx")

PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
RTMP_MODULE = "ngx_rtmp_module.so"
# Characters nginx would read as syntax (or a variable) in an unquoted value.
_UNSAFE = re.compile(r"""[\s;{}"'$#\\]""")


class NginxError(Exception):
    """nginx cannot be configured or started; the message says why and what to do."""


# ---------------------------------------------------------------- configuration


def template_values(settings: IngestSettings, secret: str) -> dict[str, str]:
    for name, value in (
        ("work_dir", str(settings.prefix)),
        ("nginx_modules_dir", str(settings.nginx_modules_dir)),
        ("coordinator_url", settings.coordinator_url),
    ):
        if _UNSAFE.search(value):
            raise ConfigError(
                f"setting {name} ({value!r}) contains a space, quote, ';', '#', '$' or brace, "
                "which nginx cannot take; choose a plainer path or URL"
            )
    fragment_ms = round(settings.fragment_s * 1000)
    # nginx-rtmp cuts at the first keyframe at least hls_fragment after the segment began. The
    # first segment of a publish begins a few tens of milliseconds after its keyframe, so with
    # hls_fragment equal to the keyframe interval that segment would run to the next keyframe
    # (twice as long); 5% below it, every keyframe on the 2 s grid starts a segment.
    cut_ms = round(fragment_ms * 0.95)
    loopback_listen = ""
    if settings.rtmp_host not in ("127.0.0.1", "0.0.0.0"):  # noqa: S104
        # The relay from 'live' to 'hls' always connects over 127.0.0.1.
        loopback_listen = f"listen 127.0.0.1:{settings.rtmp_port};"
    return {
        "rtmp_module": str(settings.nginx_modules_dir / RTMP_MODULE),
        "user_directive": _user_directive(),
        "prefix": str(settings.prefix),
        "hls_dir": str(settings.hls_dir),
        "worker_connections": str(settings.worker_connections),
        "rtmp_listen": _listen(settings.rtmp_host, settings.rtmp_port),
        "rtmp_loopback_listen": loopback_listen,
        "http_listen": _listen(settings.http_host, settings.http_port),
        "hook_port": str(settings.hook_port),
        "hook_base": settings.hook_base,
        "idle_publisher_timeout_s": str(settings.idle_publisher_timeout_s),
        "fragment_ms": str(cut_ms),
        "playlist_ms": str(cut_ms * settings.playlist_segments),
        "coordinator_url": settings.coordinator_url,
        "relay_base": settings.relay_base,
        "secret": secret,
    }


def _listen(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _user_directive() -> str:
    # nginx started by root would run its workers as 'nobody', who cannot enter a private
    # (0700) data directory; the workers run as the user who started the ingest instead.
    if os.geteuid() != 0:
        return ""
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return f"user {user} {group};"


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill every ``{{name}}``; a placeholder without a value is an error, not an empty string."""
    missing = sorted(set(PLACEHOLDER.findall(template)) - set(values))
    if missing:
        raise ConfigError(f"the nginx template uses unknown placeholder(s): {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda match: values[match[1]], template)


def write_config(settings: IngestSettings, secret: str) -> Path:
    """Render the template into the work directory (mode 0600: it holds the secret)."""
    _check_installed(settings)
    try:
        template = settings.nginx_template.read_text()
    except OSError as exc:
        raise ConfigError(
            f"the nginx template {settings.nginx_template} cannot be read: {exc.strerror}"
        ) from exc
    text = render(template, template_values(settings, secret))
    settings.prefix.mkdir(parents=True, exist_ok=True, mode=0o700)
    for sub in ("tmp", "hls"):
        (settings.prefix / sub).mkdir(exist_ok=True, mode=0o755)
    temporary = settings.conf_path.with_suffix(".conf.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, settings.conf_path)
    return settings.conf_path


def _check_installed(settings: IngestSettings) -> None:
    if not os.access(settings.nginx_binary, os.X_OK):
        raise NginxError(
            f"nginx is not installed at {settings.nginx_binary}; run scripts/bootstrap.sh "
            "(Debian packages nginx and libnginx-mod-rtmp)"
        )
    module = settings.nginx_modules_dir / RTMP_MODULE
    if not module.is_file():
        raise NginxError(
            f"the RTMP module is missing ({module}); install Debian's libnginx-mod-rtmp "
            "(scripts/bootstrap.sh does)"
        )


def _command(settings: IngestSettings, *extra: str) -> list[str]:
    return [
        str(settings.nginx_binary),
        *extra,
        "-p",
        f"{settings.prefix}/",
        "-c",
        str(settings.conf_path),
        "-e",
        "stderr",
    ]


def check_config(settings: IngestSettings) -> None:
    """``nginx -t`` on the rendered configuration; the first complaint becomes one line."""
    result = subprocess.run(
        _command(settings, "-t", "-q"), capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise NginxError(f"nginx rejects the configuration: {_first_complaint(result.stderr)}")


def _first_complaint(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        level, message = parse_log_line(line)
        if level >= logging.CRITICAL:
            return message
    return redact(lines[0]) if lines else "no reason given"


def check_ports(settings: IngestSettings) -> None:
    """Refuse to start, with the setting to change, when one of the ports is taken."""
    for host, port, setting in (
        (settings.rtmp_host, settings.rtmp_port, "rtmp_port"),
        (settings.http_host, settings.http_port, "http_port"),
        ("127.0.0.1", settings.hook_port, "hook_port"),
    ):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                env = f"{ENV_PREFIX}{setting.upper()}"
                if exc.errno == errno.EADDRINUSE:
                    raise NginxError(
                        f"port {port} on {host} ({setting}) is already in use by another "
                        f"program; stop it or choose another port ({env} or '{setting}' in the "
                        "config file)"
                    ) from exc
                raise NginxError(
                    f"cannot listen on {host}:{port} ({setting}): {exc.strerror}"
                ) from exc


# ---------------------------------------------------------------- logs

_REDACTIONS = (
    # The 'live' application's stream names are stream keys; nginx-rtmp logs the relay of one
    # at error level ("notify: push '<key>' to ..."), and names in many other lines.
    (re.compile(r"push '[^']*'"), "push '(hidden)'"),
    (re.compile(r"\b(name|playpath|args|stream)='[^']*'"), r"\1='(hidden)'"),
    (re.compile(r"(rtmp://[^/\s']+/live)/[^\s',]+"), r"\1/(hidden)"),
)
_LEVEL = re.compile(r"\[(debug|info|notice|warn|error|crit|alert|emerg)\]")
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "crit": logging.CRITICAL,
    "alert": logging.CRITICAL,
    "emerg": logging.CRITICAL,
}


def redact(line: str) -> str:
    for pattern, replacement in _REDACTIONS:
        line = pattern.sub(replacement, line)
    return line


def parse_log_line(line: str) -> tuple[int, str]:
    """nginx's ``2026/01/01 12:00:00 [error] 12#12: *3 message`` as (level, message)."""
    match = _LEVEL.search(line)
    if not match:
        return logging.INFO, redact(line.strip())
    message = line[match.end() :].strip()
    message = re.sub(r"^\d+#\d+: (\*\d+ )?", "", message)
    level = _LEVELS[match[1]]
    if message.startswith("notify: push "):
        level = logging.INFO  # nginx-rtmp reports every authorized relay at error level
    return level, redact(message)


# ---------------------------------------------------------------- process


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """A ``preexec_fn``: the child gets SIGTERM when its parent dies, however it dies.

    If the runner is killed outright, nginx must not live on holding the ports.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class NginxProcess:
    """nginx as a child: started, its stderr turned into log events, stopped on request."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.process: asyncio.subprocess.Process | None = None
        self.last_complaint = ""
        self._reader: asyncio.Task[None] | None = None

    async def start(self, ready_timeout_s: float = 15.0) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *_command(self.settings),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            # Its own session: Ctrl-C in a terminal reaches the runner, which stops nginx in
            # order, instead of reaching nginx directly.
            start_new_session=True,
            preexec_fn=die_with_parent,  # no threads exist yet at this point
        )
        self._reader = asyncio.create_task(self._read_stderr(), name="nginx-stderr")
        await self._wait_ready(ready_timeout_s)
        log.info("nginx started", extra={"pid": self.process.pid})

    async def _wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        s = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        pending = [("127.0.0.1", s.hook_port), (_connect_host(s.http_host), s.http_port)]
        pending.append((_connect_host(s.rtmp_host), s.rtmp_port))
        while pending:
            if self.process.returncode is not None:
                await self._reap()
                raise NginxError(
                    f"nginx exited at start (status {self.process.returncode}): "
                    f"{self.last_complaint or 'see the log lines above'}"
                )
            host, port = pending[0]
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError as exc:
                if loop.time() > deadline:
                    raise NginxError(
                        f"nginx did not listen on {host}:{port} within {timeout_s} s"
                    ) from exc
                await asyncio.sleep(0.05)
                continue
            writer.close()
            pending.pop(0)

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            level, message = parse_log_line(text)
            if level >= logging.ERROR:
                self.last_complaint = message
            log.log(level, message)

    async def wait(self) -> int:
        """Until the master process exits; its exit status."""
        assert self.process is not None
        # Not process.wait(): asyncio only returns once every pipe is closed, and workers
        # orphaned by a master that was killed keep nginx's stderr (and the ports) open.
        while self.process.returncode is None:  # noqa: ASYNC110 - asyncio offers no exit event
            await asyncio.sleep(0.05)
        await self._reap()
        return self.process.returncode

    async def _reap(self) -> None:
        """Kill whatever is left of nginx's process group, then collect pipes and status."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        await self.process.wait()
        if self._reader is not None and not self._reader.done():
            await asyncio.wait({self._reader}, timeout=2)  # the last lines nginx wrote

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Fast shutdown (SIGTERM): RTMP connections never end by themselves, so a graceful
        shutdown would wait forever. Anything still alive after ``timeout_s`` is killed."""
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(self.wait(), timeout_s)
                return
            except TimeoutError:
                log.warning("nginx did not stop in time; killing it")
        await self._reap()


def _connect_host(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104
