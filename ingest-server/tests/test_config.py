"""The ingest's settings: defaults, the YAML file, the environment, and the shared secret file."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest
import yaml

from streamr_ingest.config import SOURCE_DIR, ConfigError, IngestSettings, load_settings
from streamr_protocol.ingest import SecretError, read_or_create_secret

SHIPPED = SOURCE_DIR / "ingest_config.yaml"


def test_shipped_config_file_lists_every_setting_with_its_default():
    shipped = yaml.safe_load(SHIPPED.read_text())
    defaults = IngestSettings()
    listed = set(shipped) | {"nginx_template"}  # commented out: its default is a path here
    assert listed == set(IngestSettings.model_fields)
    assert load_settings(SHIPPED, environ={}) == defaults


def test_defaults_run_on_one_machine():
    settings = load_settings(environ={})
    assert (settings.rtmp_host, settings.rtmp_port) == ("127.0.0.1", 1935)
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8080)
    assert settings.coordinator_url == "http://127.0.0.1:8000"
    assert settings.prefix == Path("data/ingest").resolve()
    assert settings.secret_path == Path("data/ingest-secret").resolve()
    assert settings.relay_base == "rtmp://127.0.0.1:1935/hls"
    assert settings.rtmp_url == "rtmp://127.0.0.1:1935/live"
    assert settings.window_s == 12


def test_environment_beats_the_file_and_data_dir_follows_the_coordinator(tmp_path):
    config = tmp_path / "ingest.yaml"
    config.write_text("http_port: 9000\nfragment_s: 3\ndata_dir: /srv/from-file\n")
    settings = load_settings(
        config,
        environ={"STREAMR_INGEST_HTTP_PORT": "9100", "STREAMR_DATA_DIR": str(tmp_path / "shared")},
    )
    assert settings.http_port == 9100
    assert settings.fragment_s == 3
    assert settings.data_dir == tmp_path / "shared"
    assert settings.secret_path == tmp_path / "shared" / "ingest-secret"
    own = load_settings(
        config,
        environ={"STREAMR_DATA_DIR": "/a", "STREAMR_INGEST_DATA_DIR": str(tmp_path / "own")},
    )
    assert own.data_dir == tmp_path / "own"


def test_config_file_named_by_the_environment(tmp_path):
    config = tmp_path / "ingest.yaml"
    config.write_text("hook_port: 9999\n")
    assert load_settings(environ={"STREAMR_INGEST_CONFIG": str(config)}).hook_port == 9999


@pytest.mark.parametrize(
    ("environ", "complaint"),
    [
        ({"STREAMR_INGEST_RTMP_PORT": "http"}, r"setting rtmp_port \(STREAMR_INGEST_RTMP_PORT"),
        ({"STREAMR_INGEST_PLAYLIST_SEGMENTS": "3"}, "playlist_segments .* greater than or equal"),
        ({"STREAMR_INGEST_RTMP_HOST": "example.com"}, "must be an IP address"),
        ({"STREAMR_INGEST_COORDINATOR_URL": "ftp://x"}, "http:// or https://"),
        ({"STREAMR_INGEST_COORDINATOR_URL": "http://u:p@x"}, "no query, fragment or credential"),
        ({"STREAMR_INGEST_HOOK_PORT": "1935"}, "hook_port and rtmp_port are both 1935"),
        ({"STREAMR_INGEST_LOG_LEVEL": "loud"}, "one of DEBUG"),
    ],
)
def test_bad_values_name_the_setting_and_the_fix(environ, complaint):
    with pytest.raises(ConfigError, match=complaint):
        load_settings(environ=environ)


def test_bad_files_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(tmp_path / "missing.yaml", environ={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("rtmp_port: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken, environ={})
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_settings(listed, environ={})
    typo = tmp_path / "typo.yaml"
    typo.write_text("rtmp_prot: 1935\n")
    with pytest.raises(ConfigError, match=r"unknown setting.*rtmp_prot.*known: data_dir"):
        load_settings(typo, environ={})


def test_description_masks_the_secret():
    secret = "a-very-secret-value-" + "z" * 20
    shown = load_settings(environ={"STREAMR_INGEST_SECRET": secret}).describe()
    assert shown["secret"] == "(set)"
    assert secret not in repr(shown)
    assert load_settings(environ={}).describe()["secret"].startswith("(from ")


def test_secret_from_the_environment_must_be_safe_for_nginx_and_headers():
    with pytest.raises(SecretError, match="32 to 512 characters"):
        load_settings(environ={"STREAMR_INGEST_SECRET": "short"}).resolve_secret()
    quoted = 'x" ; deny all; "' + "y" * 32
    with pytest.raises(SecretError, match="STREAMR_INGEST_SECRET"):
        load_settings(environ={"STREAMR_INGEST_SECRET": quoted}).resolve_secret()


def test_secret_file_is_created_once_private_and_shared(tmp_path):
    settings = load_settings(environ={"STREAMR_INGEST_DATA_DIR": str(tmp_path / "data")})
    first = settings.resolve_secret()
    path = tmp_path / "data" / "ingest-secret"
    assert path.read_text() == first + "\n"
    assert len(first) == 43
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert settings.resolve_secret() == first
    # What the coordinator does with the same data directory gives the same value.
    assert read_or_create_secret(path) == first
    assert [p.name for p in path.parent.iterdir()] == ["ingest-secret"]  # no temporary left


def test_secret_file_created_concurrently_is_one_secret(tmp_path):
    path = tmp_path / "ingest-secret"
    results: list[str] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        results.append(read_or_create_secret(path))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert path.read_text().strip() == results[0]


def test_secret_file_written_late_by_the_other_side_is_waited_for(tmp_path):
    path = tmp_path / "ingest-secret"
    path.touch(mode=0o600)  # the other side created it and has not written yet
    value = "v" * 43
    timer = threading.Timer(0.2, lambda: path.write_text(value + "\n"))
    timer.start()
    assert read_or_create_secret(path) == value
    timer.join()
    path.write_text("")
    with pytest.raises(SecretError, match="not acceptable"):
        read_or_create_secret(path, wait_s=0.1)
