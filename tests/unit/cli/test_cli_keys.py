"""``eddy keys``: a keyring file made, shown without secrets, rotated and pruned, each change audited first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eddy.cli import main as cli
from eddy.cli import models as cli_models
from eddy.cli.common import CliError
from eddy.core.signing import KEY_REMOVED, KEY_ROTATED, Keyring


@pytest.fixture()
def audited(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, str, dict[str, Any]]]:
    monkeypatch.setenv("EDDY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("EDDY_SIGNING_KEYS", raising=False)
    monkeypatch.delenv("EDDY_SIGNING_KEYS_FILE", raising=False)
    entries: list[tuple[str, str, dict[str, Any]]] = []
    monkeypatch.setattr(
        cli_models, "record_audit", lambda stream, action, details, url=None: entries.append((stream, action, details))
    )
    return entries


def test_init_show_rotate_remove(audited: list, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.json"
    assert cli.main(["keys", "init", "--file", str(path), "--key-id", "k1"]) == 0
    assert cli.main(["keys", "init", "--file", str(path)]) == 1  # never overwrites a keyring
    assert cli.main(["keys", "rotate", "--file", str(path), "--key-id", "k2"]) == 0
    assert Keyring.from_json(path.read_text()).active == "k2"
    assert [(a, d["key_id"], d["previous_key_id"]) for _, a, d in audited] == [(KEY_ROTATED, "k2", "k1")]
    assert cli.main(["keys", "remove", "--file", str(path), "k1"]) == 0
    assert audited[-1][1:] == (KEY_REMOVED, {"key_id": "k1", "keys": ["k2"], "file": str(path)})
    capsys.readouterr()
    assert cli.main(["keys", "show", "--file", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [k["key_id"] for k in shown["keys"]] == ["k2"] and "secret" not in json.dumps(shown)
    assert cli.main(["keys", "remove", "--file", str(path), "k2"]) == 1  # the signing key cannot go


def test_a_change_the_audit_log_refuses_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, audited: list, tmp_path: Path
) -> None:
    path = tmp_path / "keys.json"
    assert cli.main(["keys", "init", "--file", str(path), "--key-id", "k1"]) == 0
    before = path.read_text()

    def refuse(*_args: Any, **_kw: Any) -> None:
        raise CliError("the model registry refused: 403 operator key required")

    monkeypatch.setattr(cli_models, "record_audit", refuse)
    assert cli.main(["keys", "rotate", "--file", str(path)]) == 1
    assert path.read_text() == before


def test_the_default_keyring_is_the_state_dirs(audited: list, tmp_path: Path) -> None:
    assert cli.main(["keys", "init"]) == 0
    assert (tmp_path / "state" / "secrets" / "signing-keys.json").exists()
