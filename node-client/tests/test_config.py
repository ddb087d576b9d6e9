"""Settings: file < environment < flags; the token file is private and never printed."""

from __future__ import annotations

import os

import pytest

from streamr_node.config import ConfigError, NodeConfig, load, save


def test_precedence_and_round_trip(tmp_path):
    config = NodeConfig(
        data_dir=tmp_path,
        coordinator_url="http://coordinator:8000",
        node_id="n1",
        node_token="snt_secret",
        stream="s",
        port=9000,
        egress_cap_mbps=20,
    )
    path = save(config)
    assert os.stat(path).st_mode & 0o777 == 0o600
    loaded = load(tmp_path, environ={})
    assert loaded.node_token.get_secret_value() == "snt_secret"
    assert (loaded.port, loaded.egress_cap_bps, loaded.joined) == (9000, 20_000_000, True)
    from_env = load(tmp_path, environ={"STREAMR_NODE_PORT": "9100"})
    assert from_env.port == 9100
    flagged = load(tmp_path, environ={"STREAMR_NODE_PORT": "9100"}, overrides={"port": 9200})
    assert flagged.port == 9200
    assert "snt_secret" not in repr(flagged)


def test_bad_values_name_the_setting(tmp_path):
    with pytest.raises(ConfigError, match="port"):
        load(tmp_path, environ={"STREAMR_NODE_PORT": "seventy"})
    (tmp_path / "config.toml").write_text("port = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(tmp_path, environ={})


def test_not_joined_says_what_to_run(tmp_path):
    with pytest.raises(ConfigError, match="streamr-node join"):
        load(tmp_path, environ={}).require_joined()
