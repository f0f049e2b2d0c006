"""config.toml: validation names the key, writes keep comments and never leave half a file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from openkoi import ConfigError, ConfigFile, ProviderRegistry, load_config
from openkoi._paths import config_path


def write(text: str) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_missing_file_gives_defaults() -> None:
    config = load_config()
    assert config.models.executor is None and config.providers == {}


def test_openkoi_home_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENKOI_HOME", str(tmp_path / "elsewhere"))
    assert config_path() == tmp_path / "elsewhere" / "config.toml"


def test_malformed_toml_names_the_file() -> None:
    path = write('[models\nexecutor = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_config()
    assert str(path) in str(info.value) and "not valid TOML" in str(info.value)


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[models]\nexecutor = 5\n", "models.executor", "string"),
        ('[providers.x]\nbase_url = "ftp://nope"\n', "providers.x.base_url", "http"),
        ('[providers.x]\nbase_ur = "http://a"\n', "providers.x.base_ur", "unknown key"),
        ('[modles]\nexecutor = "a/b"\n', "modles", "unknown key"),
        ('[models.fallback]\nexecutor = "a/b"\n', "models.fallback.executor", "list"),
        ('[plugins]\nwsm = ["a.wasm"]\n', "plugins.wsm", "dictionary"),
        ('[providers.x]\nbase_url = "http://127.0.0.1:99999/v1"\n', "providers.x.base_url", "port"),
        ('[providers.x]\nbase_url = "http://[::1"\n', "providers.x.base_url", "ipv6"),
        ('[providers.x]\nbase_url = "https://"\n', "providers.x.base_url", "no host"),
        ('[providers.x]\nbase_url = "http://h:abc/v1"\n', "providers.x.base_url", "port"),
        (
            '[providers.x]\nproxy = "http://user:pw@h:99999"\n',
            "providers.x.proxy",
            "not a valid proxy",
        ),
    ],
)
def test_bad_values_name_their_key(text: str, key: str, fragment: str) -> None:
    write(text)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert info.value.key == key
    assert key in str(info.value) and fragment in str(info.value).lower()


def test_write_keeps_comments_and_order() -> None:
    original = (
        "# my settings\n"
        "[models]\n"
        'executor = "openai/gpt-5.2"  # the fast one\n'
        "\n"
        "[providers.gw]\n"
        "# internal gateway\n"
        'base_url = "http://gw.local/v1"\n'
    )
    path = write(original)
    file = ConfigFile()
    file.set("models.evaluator", "anthropic/claude-opus-4-6")
    file.set("providers.gw.default_model", "llama")
    file.save()
    text = path.read_text()
    assert text.startswith(original.split("\n\n")[0])
    assert "# the fast one" in text and "# internal gateway" in text
    assert text.index("executor") < text.index("evaluator") < text.index("[providers.gw]")
    assert load_config().providers["gw"].default_model == "llama"
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_invalid_set_is_refused_and_file_untouched() -> None:
    path = write('[models]\nexecutor = "openai/gpt-5.2"\n')
    before = path.read_text()
    file = ConfigFile()
    with pytest.raises(ConfigError) as info:
        file.set("providers.gw.base_url", "not a url")
    assert info.value.key == "providers.gw.base_url"
    file.save()  # the refused value was rolled back
    assert "not a url" not in path.read_text()
    assert load_config().models.executor == "openai/gpt-5.2"
    assert before in path.read_text()


def test_failed_write_leaves_old_file_and_no_temp(monkeypatch: pytest.MonkeyPatch) -> None:
    path = write('[models]\nexecutor = "openai/gpt-5.2"\n')
    file = ConfigFile()
    file.set("models.planner", "openai/gpt-5.2")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        file.save()
    monkeypatch.undo()
    assert path.read_text() == '[models]\nexecutor = "openai/gpt-5.2"\n'
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]


def test_custom_provider_entry_needs_no_code(monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        '[providers.mygw]\nbase_url = "http://127.0.0.1:1/v1"\napi_key_env = "MYGW_KEY"\n'
        'default_model = "m1"\nname = "My Gateway"\n'
    )
    monkeypatch.setenv("MYGW_KEY", "k-123456789")
    registry = ProviderRegistry(load_config())
    provider, model = registry.resolve("mygw/m1")
    assert provider.name == "My Gateway" and model == "m1"
    settings = registry.settings("mygw")
    assert settings.base_url == "http://127.0.0.1:1/v1"
    assert settings.api_key is not None and settings.api_key.reveal() == "k-123456789"


def test_builtin_base_url_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = ProviderRegistry(load_config())
    assert registry.settings("groq").base_url == "https://api.groq.com/openai/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:5/v1/")
    assert registry.settings("openai").base_url == "http://127.0.0.1:5/v1"
    write('[providers.openai]\nbase_url = "http://127.0.0.1:6/v1"\n')
    registry = ProviderRegistry(load_config())
    assert registry.settings("openai").base_url == "http://127.0.0.1:6/v1"  # config wins


def test_a_proxy_url_s_error_never_shows_it() -> None:
    write('[providers.x]\nproxy = "http://user:hunter2-secret@h:99999"\n')
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "x = " + "[" * 100_000 + "]" * 100_000 + "\n",
        "x = " + "{a=" * 5000 + "1" + "}" * 5000 + "\n",
    ],
)
def test_toml_nested_thousands_deep_is_a_config_error(text: str) -> None:
    path = write(text)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert str(path) in str(info.value) and "nested too deeply" in str(info.value)


def test_a_byte_order_mark_is_not_part_of_the_config() -> None:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'\xef\xbb\xbf[models]\nexecutor = "openai/gpt-x"\n')
    assert load_config().models.executor == "openai/gpt-x"


def _load_within(seconds: float) -> BaseException | None:
    """`load_config()`'s error, from a thread the test waits on for at most `seconds`."""
    import threading

    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            load_config()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"reading the config did not end within {seconds} s"
    return outcome[0]


def test_a_fifo_in_place_of_the_config_is_refused_not_waited_on() -> None:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    error = _load_within(5.0)
    assert isinstance(error, ConfigError)
    assert "a FIFO, not a file" in str(error) and str(path) in str(error)


def test_a_device_in_place_of_the_config_is_refused_not_read() -> None:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to("/dev/zero")
    error = _load_within(5.0)
    assert isinstance(error, ConfigError)
    assert "a device or socket, not a file" in str(error)


def test_a_config_file_of_absurd_size_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import openkoi._fileio

    monkeypatch.setattr(openkoi._fileio, "MAX_STATE_FILE_BYTES", 1024)
    write("# " + "x" * 2000 + "\n")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "larger than" in str(info.value)
