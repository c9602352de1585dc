"""Where schemas and contracts are found: the checkout's schemas/, else the wheel's copy; none is an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from eddy.contracts.durations import ContractError
from eddy.contracts.stream import load_contracts
from eddy.core import resources
from eddy.core.settings import REPO_ROOT, Settings


def test_a_checkout_reads_its_own_schemas() -> None:
    assert resources.checkout_root() == REPO_ROOT
    assert Settings().schemas_dir == REPO_ROOT / "schemas"
    assert Settings().contracts_dir == REPO_ROOT / "schemas" / "streams"
    assert resources.demo_contract_path() == REPO_ROOT / "schemas" / "streams" / "demo.yaml"


def test_an_installed_package_is_no_checkout(tmp_path: Path) -> None:
    installed = tmp_path / "lib" / "python3.11" / "site-packages" / "eddy"
    installed.mkdir(parents=True)
    # Even beside a schemas/ folder: only the shared/eddy layout of a checkout counts.
    (installed.parent / "schemas").mkdir()
    assert resources.checkout_root(installed) is None
    checkout = tmp_path / "repo" / "shared" / "eddy"
    checkout.mkdir(parents=True)
    (tmp_path / "repo" / "schemas").mkdir()
    assert resources.checkout_root(checkout) is None  # no pyproject.toml: not eddy's repository
    (tmp_path / "repo" / "pyproject.toml").write_text("")
    assert resources.checkout_root(checkout) == tmp_path / "repo"


def test_installed_defaults_are_the_packaged_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "checkout_root", lambda package_dir=resources.PACKAGE_DIR: None)
    assert resources.default_schemas_dir() == resources.PACKAGE_DIR / "_schemas"
    assert resources.default_contracts_dir() == resources.PACKAGE_DIR / "_schemas" / "streams"


def test_the_environment_still_wins(tmp_path: Path) -> None:
    settings = Settings.from_env({"EDDY_SCHEMAS_DIR": str(tmp_path), "EDDY_CONTRACTS_DIR": str(tmp_path / "c")})
    assert (settings.schemas_dir, settings.contracts_dir) == (tmp_path, tmp_path / "c")


def test_a_missing_or_empty_contracts_folder_is_an_error_not_no_streams(tmp_path: Path) -> None:
    with pytest.raises(ContractError) as missing:
        load_contracts(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(missing.value) and "EDDY_CONTRACTS_DIR" in str(missing.value)
    (tmp_path / "notes.txt").write_text("no contract")
    with pytest.raises(ContractError, match=r"holds no stream contract \(\*\.yaml\); set EDDY_CONTRACTS_DIR"):
        load_contracts(tmp_path)
