"""Where ``cerebrum up`` runs: its record beside ``.env``, and how the other commands use it
(pure: no services; the live ``up`` is in test_orchestrated.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cerebrum
from cerebrum.cli.running import read_record, record_path, remove_record, write_record
from cerebrum.cli.serve import module_argv, module_env
from cerebrum.cli.settings import DEFAULT_BACKEND_URL, DEFAULT_URL, resolve
from cerebrum.cli.up import cli_command


def test_a_record_is_read_back_while_its_process_lives(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    path = write_record(env_file, "http://127.0.0.1:17000", "http://127.0.0.1:19000")
    assert path == tmp_path / ".cerebrum" / "up.json"
    record = read_record(env_file)
    assert record is not None
    assert (record.url, record.backend_url, record.pid) == (
        "http://127.0.0.1:17000", "http://127.0.0.1:19000", os.getpid())
    # The same .env named another way (relative, through a symlink) is the same record.
    (tmp_path / "link").symlink_to(tmp_path)
    assert read_record(tmp_path / "link" / ".env") == record


def test_a_record_is_ignored_when_its_process_is_gone_or_it_is_not_ours(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    write_record(env_file, "http://127.0.0.1:17000", "http://127.0.0.1:19000", pid=4242)
    assert read_record(env_file, alive=lambda pid: False) is None  # `up` was killed -9
    assert read_record(env_file, alive=lambda pid: pid == 4242) is not None
    assert read_record(tmp_path / "other.env", alive=lambda pid: True) is None
    for junk in ("", "{", "[]", '{"url": "x"}', json.dumps({"url": 1, "backend_url": 2,
                                                           "pid": "nine", "env_file": ""})):
        record_path(env_file).write_text(junk)
        assert read_record(env_file, alive=lambda pid: True) is None, junk
    assert read_record(tmp_path / "nowhere" / ".env") is None


def test_only_the_writer_removes_its_record(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    write_record(env_file, "http://127.0.0.1:17000", "http://127.0.0.1:19000", pid=111)
    remove_record(env_file, pid=222)  # a later `up` replaced an earlier one's record
    assert record_path(env_file).exists()
    remove_record(env_file, pid=111)
    assert not record_path(env_file).exists()
    remove_record(env_file, pid=111)  # already gone: nothing to do, no error


def test_settings_use_the_record_only_where_nothing_else_says(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    assert resolve(env_file=env_file, environ={}).url == DEFAULT_URL
    write_record(env_file, "http://127.0.0.1:17000", "http://127.0.0.1:19000")
    found = resolve(env_file=env_file, environ={})
    assert (found.url, found.backend_url) == ("http://127.0.0.1:17000", "http://127.0.0.1:19000")
    # A flag, the environment and .env each win over the record, one URL at a time.
    assert resolve(url="http://pi:7000", env_file=env_file, environ={}).backend_url == \
        "http://127.0.0.1:19000"
    from_env = resolve(env_file=env_file, environ={"CEREBRUM_URL": "http://pi:7000"})
    assert (from_env.url, from_env.backend_url) == ("http://pi:7000", "http://127.0.0.1:19000")
    env_file.write_text("CEREBRUM_BACKEND_URL=http://vps:9000\n")
    from_dotenv = resolve(env_file=env_file, environ={})
    assert (from_dotenv.url, from_dotenv.backend_url) == ("http://127.0.0.1:17000",
                                                          "http://vps:9000")
    remove_record(env_file)
    assert resolve(env_file=env_file, environ={}).url == DEFAULT_URL
    assert resolve(env_file=tmp_path / "none", environ={}).backend_url == DEFAULT_BACKEND_URL


def test_up_names_the_command_for_another_terminal(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    script = tmp_path / ".venv" / "bin" / "cerebrum"
    script.parent.mkdir(parents=True)
    script.write_text("")
    # make run: .venv/bin/cerebrum, not on PATH.
    assert cli_command(".venv/bin/cerebrum", None) == ".venv/bin/cerebrum"
    assert cli_command(str(script), "/usr/local/bin/cerebrum") == ".venv/bin/cerebrum"
    # An activated venv or a global install: PATH finds this very script.
    assert cli_command(str(script), str(script)) == "cerebrum"
    # Started from elsewhere: its absolute path.
    elsewhere = tmp_path.parent / "x" / "cerebrum"
    assert cli_command(str(elsewhere), None) == str(elsewhere)


def test_services_start_from_this_same_package() -> None:
    argv = module_argv("backend", "--port", "9000")
    assert argv[1:] == ["-P", "-m", "cerebrum.backend", "--port", "9000"]
    # A checkout (editable or not) goes first on the children's path, once.
    home = str(Path(cerebrum.__file__).resolve().parents[1])
    env = module_env({"PYTHONPATH": os.pathsep.join(["/elsewhere", home]), "X": "1"})
    assert env["PYTHONPATH"].split(os.pathsep) == [home, "/elsewhere"] and env["X"] == "1"
    assert module_env({})["PYTHONPATH"] == home


def test_a_second_up_with_the_same_env_is_refused_before_it_starts_anything(
        tmp_path: Path, capsys) -> None:
    from cerebrum.cli.main import main

    env_file = tmp_path / ".env"
    # This test's own process stands in for a live `up`.
    write_record(env_file, "http://127.0.0.1:17000", "http://127.0.0.1:19000")
    code = main(["up", "--no-repl", "--env-file", str(env_file)])
    assert code == 2
    err = capsys.readouterr().err
    assert "already up" in err and "http://127.0.0.1:17000" in err
    assert read_record(env_file) is not None  # the first one's record is untouched
