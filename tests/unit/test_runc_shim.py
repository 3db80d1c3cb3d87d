"""The runtime shim strips rlimits from the container spec and hands over to runc unchanged."""

from __future__ import annotations

import json
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path

import pytest

SHIM = Path(__file__).resolve().parents[2] / "docker" / "engine" / "runc-no-rlimits"


@pytest.fixture
def shim():
    loader = SourceFileLoader("runc_no_rlimits", str(SHIM))
    module = module_from_spec(spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def _capture_exec(monkeypatch, shim) -> list:
    calls: list = []
    monkeypatch.setattr(shim.os, "execvp", lambda file, args: calls.append((file, args)))
    return calls


def test_create_strips_process_rlimits_and_keeps_the_rest(tmp_path, monkeypatch, shim) -> None:
    spec = {"process": {"args": ["sh"], "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024,
                                                     "soft": 1024}]}, "root": {"path": "rootfs"}}
    (tmp_path / "config.json").write_text(json.dumps(spec))
    calls = _capture_exec(monkeypatch, shim)
    argv = ["--root", "/run/x", "create", "--bundle", str(tmp_path), "cid"]
    monkeypatch.setattr(shim.sys, "argv", ["runc-no-rlimits", *argv])

    shim.main()

    assert json.loads((tmp_path / "config.json").read_text()) == {
        "process": {"args": ["sh"]}, "root": {"path": "rootfs"}}
    assert calls == [("runc", ["runc", *argv])]


def test_exec_strips_rlimits_from_the_process_file(tmp_path, monkeypatch, shim) -> None:
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["true"], "rlimits": [{"type": "RLIMIT_NPROC"}]}))
    calls = _capture_exec(monkeypatch, shim)
    argv = ["exec", "--process", str(process), "cid"]
    monkeypatch.setattr(shim.sys, "argv", ["runc-no-rlimits", *argv])

    shim.main()

    assert json.loads(process.read_text()) == {"args": ["true"]}
    assert calls == [("runc", ["runc", *argv])]


def test_other_commands_pass_through_untouched(tmp_path, monkeypatch, shim) -> None:
    calls = _capture_exec(monkeypatch, shim)
    monkeypatch.setattr(shim.sys, "argv", ["runc-no-rlimits", "state", "cid"])

    shim.main()

    assert calls == [("runc", ["runc", "state", "cid"])]
