"""Dockerfiles and docker-compose.yml, checked without a Docker engine (there is none here).

What can be checked is: each Dockerfile's shape (non-root user, pinned bases, small final
stage, every COPY source present and inside the build context that .dockerignore leaves), and,
above all, that the programs run as the images and the compose file would run them. Each
image's Python packages are installed the way its Dockerfile does (a non-editable install into
a directory of their own), and the compose services are then started as plain processes with
the compose file's and the Dockerfiles' settings: service names and container paths are mapped
to loopback ports and temporary directories, nothing else is changed. PostgreSQL and Redis are
the suite's own servers. What this cannot check (base images, apt inside the image, Docker's
networking) is listed in docs/deployment.md.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import yaml

from tests.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILES = {
    "coordinator": ROOT / "coordinator/Dockerfile",
    "ingest": ROOT / "ingest-server/Dockerfile",
    "node": ROOT / "node-client/Dockerfile",
}
APP_UID = "10001"


# ------------------------------------------------------------------ Dockerfile reading


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [args for name, args in self.instructions if name == op]


@dataclass
class Dockerfile:
    path: Path
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    @property
    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.final.all("ENV"):
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                values[key] = value
        return values

    @property
    def cmd(self) -> list[str]:
        (cmd,) = self.final.all("CMD")
        return json.loads(cmd)

    def copies(self, stage: Stage) -> list[tuple[str | None, list[str], str]]:
        """(from stage, sources, destination) of each COPY in ``stage``."""
        found = []
        for args in stage.all("COPY"):
            words = shlex.split(args)
            source_stage = None
            if words[0].startswith("--from="):
                source_stage = words.pop(0).removeprefix("--from=")
            found.append((source_stage, words[:-1], words[-1]))
        return found


def read_dockerfile(path: Path) -> Dockerfile:
    text = re.sub(r"\\\n", " ", path.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), " ".join(rest.split())
        if op == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif op == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], words[0])
            stages.append(Stage(base, words[2] if len(words) > 2 else None))
        else:
            stages[-1].instructions.append((op, rest))
    return Dockerfile(path, stages)


def dockerignore_allows(relative: str) -> bool:
    """Docker's rule: the last pattern that matches decides; ``!`` lets a path back in."""
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = relative.split("/")
        # A pattern matches a path or any of its parent directories.
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        regex = fnmatch.translate(pattern).replace(".*.*/", "(.*/)?")
        if any(re.fullmatch(regex, p) for p in prefixes):
            allowed = negated
    return allowed


# ------------------------------------------------------------------ Dockerfile checks


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_dockerfile_is_small_pinned_and_runs_as_non_root(image):
    dockerfile = read_dockerfile(DOCKERFILES[image])
    final = dockerfile.final
    assert final.all("USER") == [f"{APP_UID}:{APP_UID}"], "the image runs as uid 10001"
    for stage in dockerfile.stages:
        _, _, tag = stage.base.partition(":")
        assert tag and tag != "latest" and re.search(r"\d", tag), f"unpinned base {stage.base}"
    assert len(dockerfile.stages) >= 2, "packages are built in a stage of their own"
    final_runs = " ".join(final.all("RUN"))
    assert "pip install" not in final_runs, "no pip, no build in the final stage"
    for run in final.all("RUN"):
        if "apt-get install" in run:
            assert "--no-install-recommends" in run and "rm -rf /var/lib/apt/lists/*" in run
    for stage in dockerfile.stages:
        for run in stage.all("RUN"):
            if "pip install" in run:
                assert "--no-cache-dir" in run
    assert final.all("HEALTHCHECK"), "a health check for `docker compose ps`"
    assert final.all("EXPOSE")
    assert dockerfile.cmd[0] in console_scripts(), dockerfile.cmd


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_every_copy_source_exists_inside_the_build_context(image):
    dockerfile = read_dockerfile(DOCKERFILES[image])
    names = {s.name for s in dockerfile.stages}
    for stage in dockerfile.stages:
        for source_stage, sources, _ in dockerfile.copies(stage):
            if source_stage is not None:
                assert source_stage in names, f"COPY --from={source_stage}: no such stage"
                continue
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: missing"
                assert dockerignore_allows(source), f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_local_state_and_secrets_out_of_images():
    for kept_out in (
        "data/ingest-secret",
        ".venv/bin/python",
        "node_modules/x/index.js",
        "infrastructure/cdk.json",
        ".git/config",
        "coordinator/tests/test_x.py",
        "coordinator/data/keys/jwt.pem",
        "docs/api.md",
    ):
        assert not dockerignore_allows(kept_out), kept_out
    for kept_in in (
        "package-lock.json",
        "coordinator/pyproject.toml",
        "ingest-server/nginx.conf",
        "protocol/streamr_protocol/ingest.py",
        "node-client/streamr_node/config.py",
    ):
        assert dockerignore_allows(kept_in), kept_in


# ------------------------------------------------------------------ the images' programs


def console_scripts() -> dict[str, str]:
    """Every console script the parts declare (what `pip install` puts on PATH)."""
    import tomllib

    scripts: dict[str, str] = {}
    for part in ("coordinator", "ingest-server", "node-client", "protocol"):
        project = tomllib.loads((ROOT / part / "pyproject.toml").read_text())["project"]
        scripts |= project.get("scripts", {})
    return scripts


def module_available(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@dataclass
class ImageInstall:
    """An image's Python packages installed as its Dockerfile does: not editable, into a
    directory of their own, which then comes first on PYTHONPATH and PATH."""

    dockerfile: Dockerfile
    target: Path

    def environment(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}
        return base | {
            "PYTHONPATH": str(self.target),
            "PATH": f"{self.target / 'bin'}:{ROOT / '.venv/bin'}:{base['PATH']}",
        }


def install_image(image: str, workdir: Path) -> ImageInstall:
    dockerfile = read_dockerfile(DOCKERFILES[image])
    (build,) = [
        s for s in dockerfile.stages if s.all("RUN") and "pip install" in " ".join(s.all("RUN"))
    ]
    (pip,) = [r for r in build.all("RUN") if "pip install" in r]
    copied = {dest: sources[0] for _, sources, dest in dockerfile.copies(build)}
    sources = [copied[w] for w in shlex.split(pip) if w in copied]
    assert sources, f"{image}: nothing the build stage copied is installed"
    staging = workdir / f"{image}-src"
    for source in sources:
        # A copy, so that building leaves nothing (build/, egg-info) in the working tree.
        shutil.copytree(
            ROOT / source,
            staging / source,
            ignore=shutil.ignore_patterns("tests", "*.egg-info", "__pycache__", "build", "data"),
        )
    target = workdir / f"{image}-image"
    result = subprocess.run(
        [
            str(ROOT / ".venv/bin/python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--disable-pip-version-check",
            "--target",
            str(target),
            *(str(staging / s) for s in sources),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return ImageInstall(dockerfile, target)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, ImageInstall]:
    workdir = tmp_path_factory.mktemp("images")
    return {image: install_image(image, workdir) for image in ("coordinator", "ingest", "node")}


def test_image_installs_run_from_their_own_copy(images):
    """The programs the images run come from the non-editable install, as in the image."""
    for image, module in (("coordinator", "streamr_coordinator"), ("ingest", "streamr_ingest")):
        install = images[image]
        found = subprocess.run(
            [sys.executable, "-c", f"import {module}; print({module}.__file__)"],
            env=install.environment(),
            capture_output=True,
            text=True,
        )
        assert found.stdout.startswith(str(install.target)), found.stdout + found.stderr
        assert (install.target / "bin" / install.dockerfile.cmd[0]).exists()


# ------------------------------------------------------------------ the compose file


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(value: str) -> str:
    """Compose's ${NAME} and ${NAME:-default}, from this process's environment."""

    def one(match: re.Match) -> str:
        name, _, default = match[1].partition(":-")
        return os.environ.get(name) or default

    return re.sub(r"\$\{([^}]+)\}", one, value)


def image_of(service: dict[str, Any]) -> str | None:
    build = service.get("build")
    if build is None:
        return None
    path = ROOT / build["context"] / build["dockerfile"]
    return next(name for name, p in DOCKERFILES.items() if p == path)


BUILT = [name for name, s in compose()["services"].items() if "build" in s]


def test_compose_runs_the_whole_stack():
    services = compose()["services"]
    assert set(services) == {
        "postgres",
        "redis",
        "migrate",
        "coordinator",
        "worker",
        "ingest",
        "node-1",
        "node-2",
        "node-3",
    }
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert services["coordinator"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert services["worker"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert services["ingest"]["depends_on"]["coordinator"] == {"condition": "service_healthy"}
    for name in ("coordinator", "worker", "ingest"):
        assert "streamr-data:/var/lib/streamr" in services[name]["volumes"], name


@pytest.mark.parametrize("name", BUILT)
def test_compose_commands_are_the_real_commands(name):
    service = compose()["services"][name]
    command = service["command"]
    image = read_dockerfile(DOCKERFILES[image_of(service)])
    scripts = console_scripts()
    assert command[0] in scripts, f"{command[0]} is no console script of the project"
    if command[0] == "streamr":
        from streamr_coordinator.cli import build_parser

        parser = build_parser()
        subcommands = parser._subparsers._group_actions[0].choices
        if command[1] not in subcommands:
            pytest.skip(f"`streamr {command[1]}` is not in the CLI yet (being added)")
        parser.parse_args(command[1:])
    elif command[0] == "streamr-ingest":
        from streamr_ingest.cli import build_parser

        build_parser().parse_args(command[1:])
    else:
        if not module_available("streamr_node.cli"):
            pytest.skip("the node's command line (streamr_node.cli) is not there yet")
        result = subprocess.run(
            [str(ROOT / ".venv/bin" / command[0]), *command[1:], "--help"],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
    # The image's own default command is one of these too.
    assert image.cmd[0] == command[0]


@pytest.mark.parametrize("name", BUILT)
def test_compose_and_image_settings_are_real_settings(name):
    service = compose()["services"][name]
    image = image_of(service)
    names = set(read_dockerfile(DOCKERFILES[image]).env) | set(service.get("environment", {}))
    names = {n for n in names if n.startswith("STREAMR_")}
    if image == "coordinator":
        from streamr_coordinator.settings import Settings

        known = {f"STREAMR_{f.upper()}" for f in Settings.model_fields} | {"STREAMR_GIT_COMMIT"}
    elif image == "ingest":
        from streamr_ingest.config import IngestSettings

        known = {f"STREAMR_INGEST_{f.upper()}" for f in IngestSettings.model_fields}
        known |= {"STREAMR_DATA_DIR"}
    else:
        from streamr_node.config import NodeConfig

        known = {f"STREAMR_NODE_{f.upper()}" for f in NodeConfig.model_fields}
        # `run` joins with these on the first start (streamr_node.cli).
        known |= {"STREAMR_NODE_INVITE", "STREAMR_NODE_EMAIL", "STREAMR_NODE_PASSWORD"}
    unknown = sorted(names - known)
    assert not unknown, f"{name}: no program reads {unknown}"


# ------------------------------------------------------------------ compose, run as processes


@dataclass
class Running:
    """The compose stack as processes: where each service really is, and its logs."""

    runner: ComposeAsProcesses
    stack: ExitStack
    urls: dict[str, str]
    processes: dict[str, subprocess.Popen]
    logs: dict[str, Path]
    env: dict[str, dict[str, str]]

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")


# Which setting each image listens on, and on which address, by container port.
LISTEN = {
    "coordinator": ({8000: "STREAMR_PORT"}, ["STREAMR_HOST"]),
    "ingest": (
        {
            1935: "STREAMR_INGEST_RTMP_PORT",
            8080: "STREAMR_INGEST_HTTP_PORT",
            8081: "STREAMR_INGEST_HOOK_PORT",
        },
        ["STREAMR_INGEST_RTMP_HOST", "STREAMR_INGEST_HTTP_HOST"],
    ),
    "node": ({}, ["STREAMR_NODE_HOST"]),
}


class ComposeAsProcesses:
    def __init__(self, images: dict[str, ImageInstall], workdir: Path, postgres, redis_url: str):
        self.images, self.workdir = images, workdir
        self.services = compose()["services"]
        database = f"compose_{uuid.uuid4().hex[:8]}"
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(postgres.port),
                "-U",
                postgres.user,
                "-d",
                "postgres",
                "-qc",
                f'CREATE DATABASE "{database}"',
            ],
            check=True,
            capture_output=True,
        )
        redis_port = urlsplit(redis_url).port
        # (service, container port) -> loopback port; the database URL's name -> ours.
        self.ports: dict[tuple[str, int], int] = {
            ("postgres", 5432): postgres.port,
            ("redis", 6379): redis_port,
        }
        self.database = database
        self.published: dict[int, int] = {}  # host port in the compose file -> loopback port
        for name, service in self.services.items():
            if "build" not in service:
                continue
            image = image_of(service)
            listen, _ = LISTEN[image]
            for port in listen:
                self.ports[(name, port)] = free_port()
            for published in service.get("ports", []):
                _, host_port, container_port = published.split(":")
                local = self.ports.setdefault((name, int(container_port)), free_port())
                self.published[int(host_port)] = local

    def url(self, service: str, port: int, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.ports[(service, port)]}"

    def _map_value(self, value: str, paths: dict[str, Path]) -> str:
        # Ports published on the host (rtmp://127.0.0.1:1935/live) first, then service names.
        value = re.sub(
            r"127\.0\.0\.1:(\d+)",
            lambda m: f"127.0.0.1:{self.published.get(int(m[1]), m[1])}",
            value,
        )
        for (service, port), local in self.ports.items():
            value = value.replace(f"{service}:{port}", f"127.0.0.1:{local}")
        if value.startswith("postgresql://"):
            value = urlunsplit(urlsplit(value)._replace(path=f"/{self.database}"))
        for prefix, local in sorted(paths.items(), key=lambda p: -len(p[0])):
            if value == prefix or value.startswith(prefix + "/"):
                return str(local) + value[len(prefix) :]
        return value

    def environment(self, name: str) -> dict[str, str]:
        service = self.services[name]
        image = image_of(service)
        install = self.images[image]
        dockerfile = install.dockerfile
        paths: dict[str, Path] = {}
        for volume in service.get("volumes", []):
            source, _, container_path = volume.partition(":")
            local = self.workdir / "volumes" / source
            local.mkdir(parents=True, exist_ok=True)
            paths[container_path] = local
        for stage_name, sources, dest in dockerfile.copies(dockerfile.final):
            if stage_name is None:
                paths[dest] = ROOT / sources[0]
            elif "npm ci" in " ".join(dockerfile.stage(stage_name).all("RUN")):
                paths[dest] = ROOT / "node_modules"  # what `npm ci` makes of package-lock.json
        env = install.environment()
        image_env = dict(dockerfile.env)
        image_env.pop("PATH")  # the install's bin/ is on PATH already
        settings = image_env | {
            k: interpolate(str(v)) for k, v in service.get("environment", {}).items()
        }
        for key, value in settings.items():
            mapped = self._map_value(value, paths)
            if mapped.startswith("/"):
                assert Path(mapped).exists() or key.endswith("_DIR"), f"{name}: {key}={value}"
            env[key] = mapped
        listen, hosts = LISTEN[image]
        for port, setting in listen.items():
            env[setting] = str(self.ports[(name, port)])
        for setting in hosts:
            env[setting] = "127.0.0.1"  # never beyond loopback here
        if image == "node":
            env["STREAMR_NODE_PORT"] = str(self.ports[(name, int(env["STREAMR_NODE_PORT"]))])
        return env

    def start(self, name: str, stack: ExitStack, **extra: str) -> tuple[subprocess.Popen, Path]:
        env = self.environment(name) | extra
        log = self.workdir / f"{name}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                self.services[name]["command"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )

        def stop() -> None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

        stack.callback(stop)
        return process, log


@pytest.fixture(scope="module")
def compose_stack(images, postgres_server, redis_server, tmp_path_factory) -> Iterator[Running]:
    runner = ComposeAsProcesses(
        images, tmp_path_factory.mktemp("compose"), postgres_server, redis_server
    )
    with ExitStack() as stack:
        migrate = subprocess.run(
            runner.services["migrate"]["command"],
            env=runner.environment("migrate"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stderr
        processes, logs = {}, {}
        for name, port in (("coordinator", 8000), ("ingest", 8080)):
            processes[name], logs[name] = runner.start(name, stack)
            wait_for_port(runner.ports[(name, port)], timeout_s=60, process=processes[name])
        wait_for_port(runner.ports[("ingest", 1935)], timeout_s=30, process=processes["ingest"])
        yield Running(
            runner=runner,
            stack=stack,
            urls={
                "api": runner.url("coordinator", 8000),
                "origin": runner.url("ingest", 8080),
                "rtmp": f"{runner.url('ingest', 1935, 'rtmp')}/live",
            },
            processes=processes,
            logs=logs,
            env={name: runner.environment(name) for name in ("coordinator", "ingest")},
        )


def test_compose_coordinator_uses_postgres_and_redis(compose_stack):
    health = httpx.get(f"{compose_stack.urls['api']}/health", timeout=10)
    assert health.status_code == 200, health.text
    checks = health.json()["checks"] if "checks" in health.json() else health.json()
    assert "ok" in json.dumps(checks)
    assert compose_stack.env["coordinator"]["STREAMR_REDIS_URL"].startswith("redis://127.0.0.1:")
    assert "postgresql://" in compose_stack.env["coordinator"]["STREAMR_DATABASE_URL"]
    docs = httpx.get(f"{compose_stack.urls['api']}/docs", timeout=10)
    assert docs.status_code == 200 and "swagger" in docs.text.lower(), "web assets are found"


def test_compose_ingest_takes_a_stream_live_through_the_coordinator(compose_stack):
    """The coordinator URL, the shared secret file on the common volume and the ports all fit:
    a test card published over RTMP goes LIVE, and the origin serves its attested HLS."""
    api = httpx.Client(base_url=compose_stack.urls["api"], timeout=10)
    email = f"compose-{uuid.uuid4().hex[:8]}@example.com"
    token = api.post(
        "/api/v1/auth/register",
        json={"email": email, "display_name": "C", "password": "a long passphrase"},
    ).json()["access_token"]
    created = api.post(
        "/api/v1/streams",
        json={"name": "compose-live", "title": "Compose"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 201, created.text
    card = subprocess.Popen(
        [
            "streamr-ingest",
            "push-test",
            "compose-live",
            "--key",
            "-",
            "--seconds",
            "12",
            "--rtmp",
            compose_stack.urls["rtmp"],
            "--size",
            "320x180",
        ],
        env=compose_stack.env["ingest"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert card.stdin is not None
        card.stdin.write(created.json()["stream_key"] + "\n")
        card.stdin.close()
        deadline = time.monotonic() + 40
        while True:
            status = api.get("/api/v1/streams/compose-live").json()["status"]
            index = api.get("/api/v1/streams/compose-live/segments").json()["segments"]
            if (status == "LIVE" and index) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert status == "LIVE", compose_stack.log("ingest")[-2000:]
        assert index, "segments were attested"
        playlist = httpx.get(f"{compose_stack.urls['origin']}/hls/compose-live/index.m3u8")
        assert playlist.status_code == 200 and index[-1]["name"] in playlist.text
    finally:
        card.kill()
        card.wait()
        api.close()
    assert compose_stack.processes["ingest"].poll() is None, "the ingest keeps running"


def test_compose_worker_runs_beside_the_coordinator(compose_stack):
    from streamr_coordinator.cli import build_parser

    choices = build_parser()._subparsers._group_actions[0].choices
    if "worker" not in choices:
        pytest.skip("`streamr worker` is not in the CLI yet (being added)")
    with ExitStack() as stack:
        worker, log = compose_stack.runner.start("worker", stack)
        # It has connected and is working when the coordinator still answers and it still runs.
        assert httpx.get(f"{compose_stack.urls['api']}/health", timeout=10).status_code == 200
        assert worker.poll() is None, log.read_text()
        worker.send_signal(signal.SIGTERM)
        status = worker.wait(timeout=30)
        assert status in (0, -signal.SIGTERM), log.read_text()


def test_compose_nodes_join_with_the_invite(compose_stack):
    if not module_available("streamr_node.cli"):
        pytest.skip(
            "the node's command line (streamr_node.cli) is not there yet; the node services' "
            "`streamr-node run` is checked once it is"
        )
    api = httpx.Client(base_url=compose_stack.urls["api"], timeout=10)
    email = f"compose-node-{uuid.uuid4().hex[:8]}@example.com"
    registered = api.post(
        "/api/v1/auth/register",
        json={"email": email, "display_name": "N", "password": "a long passphrase"},
    )
    auth = {"Authorization": f"Bearer {registered.json()['access_token']}"}
    created = api.post(
        "/api/v1/streams", json={"name": "compose-nodes", "title": "N"}, headers=auth
    )
    assert created.status_code == 201, created.text
    invite = api.post(
        "/api/v1/streams/compose-nodes/invites", json={"max_uses": 3}, headers=auth
    ).json()["code"]
    runner = compose_stack.runner
    with ExitStack() as stack:
        for name in ("node-1", "node-2", "node-3"):
            process, log = runner.start(name, stack, STREAMR_NODE_INVITE=invite)
            port = int(runner.environment(name)["STREAMR_NODE_PORT"])
            wait_for_port(port, timeout_s=60, process=process)
            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
            assert health.status_code == 200, log.read_text()
        nodes = api.get("/api/v1/streams/compose-nodes/nodes").json()
        assert nodes["registered"] == 3
    api.close()
