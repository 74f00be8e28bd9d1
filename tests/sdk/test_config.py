"""Configuration: flags (one or two dashes) > env > file > defaults; unknown names suggested."""

from __future__ import annotations

from pathlib import Path

import pytest

from gdos_sdk.config import (
    MasterSettings,
    WorkerSettings,
    iter_options,
    load_master_settings,
    load_worker_settings,
    master_url_list,
    parse_listen,
)
from gdos_sdk.errors import ConfigError


def test_defaults(tmp_path: Path) -> None:
    settings = load_master_settings([], env={}, cwd=tmp_path)
    assert settings == MasterSettings()
    assert settings.server.listen == ":8080"
    assert settings.db_path == Path("./data/ops.db")
    worker = load_worker_settings([], env={}, cwd=tmp_path)
    assert worker.connect.master_url == "http://127.0.0.1:8080"
    assert worker.server.listen == "127.0.0.1:8081"  # the status port stays on loopback


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "server:\n  listen: ':7000'\n  data_dir: /srv/file\nstorage:\n  minio_bucket: fromfile\n"
    )
    env = {"OPS_MASTER_SERVER_LISTEN": ":7100", "OPS_MASTER_SERVER_DATA_DIR": "/srv/env"}
    settings = load_master_settings(["--port", ":7200"], env=env, cwd=tmp_path)
    assert settings.server.listen == ":7200"  # flag
    assert settings.server.data_dir == "/srv/env"  # env over file
    assert settings.storage.minio_bucket == "fromfile"  # file over default
    assert settings.fleet.heartbeat_interval == 1.0  # default


def test_seed_flags_with_one_or_two_dashes_and_equals(tmp_path: Path) -> None:
    a = load_master_settings(
        [
            "-port",
            ":9090",
            "-db_path",
            "/data/ops.db",
            "-store_type",
            "minio",
            "-minio_endpoint",
            "10.0.0.5:9000",
        ],
        env={},
        cwd=tmp_path,
    )
    b = load_master_settings(
        [
            "--port=:9090",
            "--db_path=/data/ops.db",
            "--store_type=minio",
            "--minio_endpoint=10.0.0.5:9000",
        ],
        env={},
        cwd=tmp_path,
    )
    assert a == b
    assert a.storage.type == "minio" and a.db_path == Path("/data/ops.db")
    w = load_worker_settings(
        [
            "-port",
            "8082",
            "-master",
            "http://10.0.0.1:8080",
            "-insecure",  # plain HTTP off loopback must be asked for (docs/security.md)
            "-work_dir",
            "/opt/instances",
        ],
        env={},
        cwd=tmp_path,
    )
    assert w.server.listen == "8082" and w.runtime.work_dir == "/opt/instances"
    assert parse_listen(w.server.listen, default_host="0.0.0.0") == ("0.0.0.0", 8082)


def test_seed_env_example(tmp_path: Path) -> None:
    env = {
        "OPS_WORKER_CONNECT_MASTER_URL": "http://10.0.0.1:8080",
        "OPS_WORKER_CONNECT_INSECURE": "1",
    }
    assert (
        load_worker_settings([], env=env, cwd=tmp_path).connect.master_url == "http://10.0.0.1:8080"
    )


def test_worker_yaml_and_explicit_config(tmp_path: Path) -> None:
    (tmp_path / "worker.yaml").write_text("runtime:\n  work_dir: /w\n")
    assert load_worker_settings([], env={}, cwd=tmp_path).runtime.work_dir == "/w"
    (tmp_path / "other.yaml").write_text("runtime:\n  work_dir: /other\n")
    settings = load_worker_settings(["-config", "other.yaml"], env={}, cwd=tmp_path)
    assert settings.runtime.work_dir == "/other"


@pytest.mark.parametrize(
    ("argv", "env", "yaml", "needle"),
    [
        (["-prot", "1"], {}, None, "did you mean -port"),
        (["-port"], {}, None, "needs a value"),
        ([], {"OPS_MASTER_SERVER_LISTN": "x"}, None, "OPS_MASTER_SERVER_LISTEN"),
        ([], {}, "servr:\n  listen: x\n", "did you mean 'server'"),
        ([], {}, "server:\n  lisen: x\n", "server.listen"),
        ([], {"OPS_MASTER_FLEET_HEARTBEAT_INTERVAL": "fast"}, None, "expected a number"),
        ([], {"OPS_MASTER_AUTH_REQUIRE_APPROVAL": "maybe"}, None, "true/false"),
        (["-store_type", "ftp"], {}, None, "storage.type"),
        (["-db_url", "mysql://db/gdos"], {}, None, "database.url must start with postgresql://"),
        (["-port", "http"], {}, None, "port"),
        ([], {}, "- a list\n", "mapping"),
    ],
)
def test_bad_configuration_is_a_clear_error(
    tmp_path: Path, argv: list[str], env: dict[str, str], yaml: str | None, needle: str
) -> None:
    if yaml is not None:
        (tmp_path / "config.yaml").write_text(yaml)
    with pytest.raises(ConfigError) as caught:
        load_master_settings(argv, env=env, cwd=tmp_path)
    assert needle in caught.value.message


def test_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    settings = load_master_settings(["-minio_secret_key", "s3cr3t-value"], env={}, cwd=tmp_path)
    assert settings.storage.minio_secret_key == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(settings)


def test_the_database_url_from_a_flag_the_environment_or_the_file(tmp_path: Path) -> None:
    url = "postgresql://gdos:pw@db:5432/gdos"
    assert load_master_settings([], env={}, cwd=tmp_path).database.url == ""  # SQLite
    assert load_master_settings(["-db_url", url], env={}, cwd=tmp_path).database.url == url
    env = {"OPS_MASTER_DATABASE_URL": url}
    assert load_master_settings([], env=env, cwd=tmp_path).database.url == url
    (tmp_path / "config.yaml").write_text(f"database:\n  url: {url}\n")
    settings = load_master_settings([], env={}, cwd=tmp_path)
    assert settings.database.url == url and "pw@" not in repr(settings)


def test_every_option_has_help_and_a_documented_env_name() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    for cls, prefix in ((MasterSettings, "OPS_MASTER_"), (WorkerSettings, "OPS_WORKER_")):
        for option in iter_options(cls):
            assert option.help, option.key
            assert option.env_name(prefix) in doc, option.env_name(prefix)
            if option.flag:
                assert f"-{option.flag}" in doc


def test_worker_fetch_attempts_is_bounded(tmp_path: Path) -> None:
    assert load_worker_settings([], env={}, cwd=tmp_path).runtime.fetch_attempts == 5
    env = {"OPS_WORKER_RUNTIME_FETCH_ATTEMPTS": "2"}
    assert load_worker_settings([], env=env, cwd=tmp_path).runtime.fetch_attempts == 2
    for bad in ("0", "21"):
        with pytest.raises(ConfigError, match=r"runtime\.fetch_attempts"):
            load_worker_settings([], env={"OPS_WORKER_RUNTIME_FETCH_ATTEMPTS": bad}, cwd=tmp_path)


def test_worker_channel_pings_are_on_by_default_and_not_negative(tmp_path: Path) -> None:
    connect = load_worker_settings([], env={}, cwd=tmp_path).connect
    # A silent master is noticed within ping_interval + ping_timeout + 1 s (the agent's close
    # timeout): 6 s, the default push interval + fleet.offline_grace (docs/scale-out.md).
    assert (connect.ping_interval, connect.ping_timeout) == (2.0, 3.0)
    env = {"OPS_WORKER_CONNECT_PING_INTERVAL": "0"}
    assert load_worker_settings([], env=env, cwd=tmp_path).connect.ping_interval == 0
    with pytest.raises(ConfigError, match=r"connect\.ping_timeout must be >= 0"):
        load_worker_settings([], env={"OPS_WORKER_CONNECT_PING_TIMEOUT": "-1"}, cwd=tmp_path)


def test_worker_keeps_three_versions_by_default_and_at_least_one(tmp_path: Path) -> None:
    assert load_worker_settings([], env={}, cwd=tmp_path).runtime.keep_versions == 3
    env = {"OPS_WORKER_RUNTIME_KEEP_VERSIONS": "1"}
    assert load_worker_settings([], env=env, cwd=tmp_path).runtime.keep_versions == 1
    with pytest.raises(ConfigError, match=r"runtime\.keep_versions must be at least 1"):
        load_worker_settings([], env={"OPS_WORKER_RUNTIME_KEEP_VERSIONS": "0"}, cwd=tmp_path)


def test_one_master_url_is_read_as_before(tmp_path: Path) -> None:
    connect = load_worker_settings(["-master", "https://m1:8443/"], env={}, cwd=tmp_path).connect
    assert connect.master_url == "https://m1:8443/"
    assert master_url_list(connect.master_url) == ["https://m1:8443"]


def test_several_masters_on_the_flag_and_in_the_environment(tmp_path: Path) -> None:
    flag = load_worker_settings(
        ["-master", "https://m1:8443, https://m2:8443,http://127.0.0.1:8080,"], env={}, cwd=tmp_path
    )
    assert master_url_list(flag.connect.master_url) == [
        "https://m1:8443",
        "https://m2:8443",
        "http://127.0.0.1:8080",
    ]
    env = {"OPS_WORKER_CONNECT_MASTER_URL": "https://m1,https://m2"}
    from_env = load_worker_settings([], env=env, cwd=tmp_path)
    assert master_url_list(from_env.connect.master_url) == ["https://m1", "https://m2"]


def test_several_masters_in_yaml_as_a_list_or_a_string(tmp_path: Path) -> None:
    (tmp_path / "worker.yaml").write_text(
        "connect:\n  master_url:\n    - https://m1:8443\n    - https://m2:8443\n"
    )
    listed = load_worker_settings([], env={}, cwd=tmp_path).connect.master_url
    assert master_url_list(listed) == ["https://m1:8443", "https://m2:8443"]
    (tmp_path / "worker.yaml").write_text("connect:\n  master_url: https://m1, https://m2\n")
    text = load_worker_settings([], env={}, cwd=tmp_path).connect.master_url
    assert master_url_list(text) == ["https://m1", "https://m2"]
    (tmp_path / "worker.yaml").write_text("connect:\n  master_url: https://only:8443\n")
    single = load_worker_settings([], env={}, cwd=tmp_path).connect.master_url
    assert master_url_list(single) == ["https://only:8443"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "https://m1,ftp://m2",
            r"connect\.master_url entry 2 must start with http:// or https://, got 'ftp://m2'",
        ),
        (
            "https://m1,http://10.0.0.2:8080",
            r"refusing plain HTTP to http://10\.0\.0\.2:8080",
        ),
        ("https://m1,https://m1/", r"entry 2 lists https://m1 a second time"),
        (" , ", r"connect\.master_url names no master"),
        ("m1:8080", r"connect\.master_url must start with http:// or https://, got 'm1:8080'"),
    ],
)
def test_a_bad_master_entry_is_named(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_worker_settings(["-master", value], env={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match=message):
        load_worker_settings([], env={"OPS_WORKER_CONNECT_MASTER_URL": value}, cwd=tmp_path)


def test_a_yaml_master_list_holds_urls_only(tmp_path: Path) -> None:
    (tmp_path / "worker.yaml").write_text(
        "connect:\n  master_url:\n    - https://m1\n    - {url: https://m2}\n"
    )
    with pytest.raises(ConfigError, match=r"connect\.master_url .*each entry of the list"):
        load_worker_settings([], env={}, cwd=tmp_path)
    (tmp_path / "worker.yaml").write_text("connect:\n  master_url: [https://m1, ftp://m2]\n")
    with pytest.raises(ConfigError, match=r"entry 2 must start with http:// or https://"):
        load_worker_settings([], env={}, cwd=tmp_path)
    (tmp_path / "worker.yaml").write_text("runtime:\n  work_dir: [a, b]\n")
    with pytest.raises(ConfigError, match=r"runtime\.work_dir .*expected a single value"):
        load_worker_settings([], env={}, cwd=tmp_path)


def test_the_worker_help_shows_that_master_takes_a_list() -> None:
    from gdos_worker.cli import help_text

    assert "-master URL[,URL...]" in help_text()


PG = "postgresql://gdos:pw@db:5432/gdos"


def test_the_bus_and_master_id_from_a_flag_the_environment_or_the_file(tmp_path: Path) -> None:
    default = load_master_settings([], env={}, cwd=tmp_path).cluster
    assert (default.bus, default.master_id) == ("", "")  # one master, no bus
    argv = ["-db_url", PG, "-bus", "nats://n1:4222,nats://n2:4222", "-master_id", "m-a"]
    cluster = load_master_settings(argv, env={}, cwd=tmp_path).cluster
    assert (cluster.bus, cluster.master_id) == ("nats://n1:4222,nats://n2:4222", "m-a")
    env = {
        "OPS_MASTER_DATABASE_URL": PG,
        "OPS_MASTER_CLUSTER_BUS": "nats://n1:4222",
        "OPS_MASTER_CLUSTER_MASTER_ID": "m-b",
    }
    cluster = load_master_settings([], env=env, cwd=tmp_path).cluster
    assert (cluster.bus, cluster.master_id) == ("nats://n1:4222", "m-b")
    (tmp_path / "config.yaml").write_text(
        f"database:\n  url: {PG}\ncluster:\n  bus: tls://n3:4222\n  master_id: m-c\n"
    )
    cluster = load_master_settings([], env={}, cwd=tmp_path).cluster
    assert (cluster.bus, cluster.master_id) == ("tls://n3:4222", "m-c")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["-bus", "nats://n1:4222"], "must share one PostgreSQL database: give -db_url"),
        (["-db_url", PG, "-bus", "http://n1:4222"], "'http://n1:4222' is not a NATS server URL"),
        (["-db_url", PG, "-bus", "nats://"], "is not a NATS server URL"),
        (["-master_id", "a b"], "cluster.master_id 'a b' must be"),
        (["-master_id", "-x"], "starting with a letter or digit"),
    ],
)
def test_a_bus_without_postgresql_or_a_bad_cluster_option_is_refused(
    tmp_path: Path, argv: list[str], needle: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_master_settings(argv, env={}, cwd=tmp_path)
    assert needle in caught.value.message
