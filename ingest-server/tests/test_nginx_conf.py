"""The rendered nginx configuration: accepted by the real nginx, secret only in one header."""

from __future__ import annotations

import logging
import re
import socket
import stat

import pytest

from streamr_ingest.config import ConfigError, load_settings
from streamr_ingest.nginx import (
    NginxError,
    check_config,
    check_ports,
    parse_log_line,
    redact,
    render,
    template_values,
    write_config,
)
from tests.servers import free_port

SECRET = "rendered-secret-" + "q" * 32


def settings_in(tmp_path, **values):
    environ = {"STREAMR_INGEST_DATA_DIR": str(tmp_path / "data")}
    environ |= {f"STREAMR_INGEST_{k.upper()}": str(v) for k, v in values.items()}
    return load_settings(environ=environ)


@pytest.fixture
def settings(tmp_path):
    return settings_in(
        tmp_path, rtmp_port=free_port(), http_port=free_port(), hook_port=free_port()
    )


def test_rendered_config_passes_nginx_t_with_the_real_binary(settings):
    path = write_config(settings, SECRET)
    check_config(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (settings.prefix / "hls").is_dir()


def test_rendering_fills_every_placeholder_and_follows_the_settings(settings):
    text = write_config(settings, SECRET).read_text()
    assert "{{" not in text and "}}" not in text
    assert f"listen 127.0.0.1:{settings.rtmp_port};" in text
    assert f"listen 127.0.0.1:{settings.http_port};" in text
    assert f"listen 127.0.0.1:{settings.hook_port};" in text
    assert "hls_fragment 1900ms;" in text  # 5% under the 2 s keyframe grid, see nginx.py
    assert "hls_playlist_length 11400ms;" in text  # 6 segments
    assert "hls_continuous on;" in text and "hls_cleanup off;" in text
    assert f"hls_path {settings.hls_dir};" in text
    assert f"on_publish http://127.0.0.1:{settings.hook_port}/authorize;" in text
    assert f'X-Streamr-Relay-Base "rtmp://127.0.0.1:{settings.rtmp_port}/hls"' in text
    assert "proxy_pass http://127.0.0.1:8000/api/v1/ingest/hooks/publish-done;" in text


def test_secret_is_in_one_header_line_and_in_no_url(settings):
    text = write_config(settings, SECRET).read_text()
    lines = [line.strip() for line in text.splitlines() if SECRET in line]
    assert lines == [f'proxy_set_header X-Streamr-Ingest-Secret "{SECRET}";']
    urls = re.findall(r"[a-z]+://\S+", text)
    assert urls, "the template has hook and relay URLs"
    assert not [url for url in urls if SECRET in url]


def test_other_layouts_render_and_pass_nginx_t(tmp_path):
    settings = settings_in(
        tmp_path,
        rtmp_host="0.0.0.0",  # noqa: S104 - only rendered and tested, never started
        rtmp_port=free_port(),
        http_port=free_port(),
        hook_port=free_port(),
        fragment_s=4,
        playlist_segments=10,
        coordinator_url="https://localhost:8443/streamr/",
    )
    text = write_config(settings, SECRET).read_text()
    check_config(settings)
    assert f"listen 0.0.0.0:{settings.rtmp_port};" in text
    assert "hls_fragment 3800ms;" in text and "hls_playlist_length 38000ms;" in text
    assert "proxy_pass https://localhost:8443/streamr/api/v1/ingest/hooks/authorize;" in text
    specific = settings_in(tmp_path, rtmp_host="192.0.2.10", rtmp_port=1935)
    values = template_values(specific, SECRET)
    assert values["rtmp_loopback_listen"] == "listen 127.0.0.1:1935;"


def test_workers_run_as_the_starting_user_when_root(settings, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert template_values(settings, SECRET)["user_directive"].startswith("user root ")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert template_values(settings, SECRET)["user_directive"] == ""


def test_unknown_placeholder_and_unsafe_values_are_refused(settings, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown placeholder.*nope"):
        render("listen {{rtmp_listen}}; {{nope}}", {"rtmp_listen": "x"})
    spaced = settings_in(tmp_path, work_dir=tmp_path / "with space")
    with pytest.raises(ConfigError, match=r"setting work_dir .* nginx cannot take"):
        write_config(spaced, SECRET)


def test_a_broken_template_is_one_readable_line(settings, tmp_path):
    template = tmp_path / "broken.conf"
    template.write_text("events {}\nthis_is_not_a_directive on;\n")
    broken = settings.model_copy(update={"nginx_template": template})
    write_config(broken, SECRET)
    with pytest.raises(NginxError) as caught:
        check_config(broken)
    message = str(caught.value)
    assert message.startswith("nginx rejects the configuration: unknown directive")
    assert "\n" not in message


def test_missing_rtmp_module_is_named(settings, tmp_path):
    missing = settings.model_copy(update={"nginx_modules_dir": tmp_path})
    with pytest.raises(NginxError, match="libnginx-mod-rtmp"):
        write_config(missing, SECRET)


def test_a_taken_port_names_the_setting_to_change(settings):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", settings.http_port))
        taken.listen()
        with pytest.raises(NginxError) as caught:
            check_ports(settings)
    assert str(caught.value) == (
        f"port {settings.http_port} on 127.0.0.1 (http_port) is already in use by another "
        "program; stop it or choose another port (STREAMR_INGEST_HTTP_PORT or 'http_port' in "
        "the config file)"
    )
    check_ports(settings)  # free again


# Lines Debian's nginx-rtmp wrote while a stream key ("sk_secretkey") was published.
NGINX_LINES = [
    "2026/11/27 10:16:33 [error] 31167#31167: *1 notify: push 'sk_secretkey' to "
    "'rtmp://127.0.0.1:19350/hls/pub1', client: 127.0.0.1, server: 127.0.0.1:19350",
    "2026/11/27 10:16:33 [info] 31167#31167: *1 publish: name='sk_secretkey' args='' "
    "type=live silent=0, client: 127.0.0.1, server: 127.0.0.1:19350",
    "2026/11/27 10:16:33 [info] 31167#31167: *1 relay: create push name='sk_secretkey' app='' "
    "playpath='' url='127.0.0.1:19350/hls/pub1', client: 127.0.0.1, server: 127.0.0.1:19350",
    "2026/11/27 10:17:12 [error] 5#5: *26 rtmp://127.0.0.1:1935/live/sk_secretkey: refused",
]


def test_nginx_log_lines_never_carry_a_stream_key():
    for line in NGINX_LINES:
        _, message = parse_log_line(line)
        assert "sk_secretkey" not in message
    level, message = parse_log_line(NGINX_LINES[0])
    assert level == logging.INFO  # a normal relay, however nginx-rtmp labels it
    assert message.startswith("notify: push '(hidden)' to 'rtmp://127.0.0.1:19350/hls/pub1'")
    assert parse_log_line(NGINX_LINES[3])[0] == logging.ERROR
    assert parse_log_line("nginx: [emerg] bind() failed")[0] == logging.CRITICAL
    assert redact("plain text") == "plain text"
