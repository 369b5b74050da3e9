from config_merger import deep_merge, from_env, get_path, layered


def test_override_wins():
    assert deep_merge({"a": 1, "b": 2}, {"b": 3}) == {"a": 1, "b": 3}


def test_nested_dicts_merge():
    base = {"db": {"host": "h", "port": 5432}}
    assert deep_merge(base, {"db": {"port": 6432}}) == {"db": {"host": "h", "port": 6432}}
    assert base == {"db": {"host": "h", "port": 5432}}


def test_dict_replaces_scalar():
    assert deep_merge({"a": 1}, {"a": {"x": 1}}) == {"a": {"x": 1}}


def test_from_env_nests_and_filters():
    environ = {"APP_DB__HOST": "db1", "APP_DEBUG": "1", "HOME": "/root"}
    assert from_env(environ) == {"db": {"host": "db1"}, "debug": "1"}


def test_later_layers_win():
    assert layered({"a": 1, "b": 1}, {"a": 2}, {"a": 3}) == {"a": 3, "b": 1}


def test_get_path():
    config = {"db": {"host": "db1"}, "debug": "1"}
    assert get_path(config, "db.host") == "db1"
    assert get_path(config, "db.user", "admin") == "admin"
    assert get_path(config, "debug.level", 0) == 0
