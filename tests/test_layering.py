"""The import contracts (pyproject ``[tool.importlinter]``) hold, and break on a wrong import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("realtime", "apps_admin", "history", "push", "sockudo_project")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def copy_project(tmp_path: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_node_importing_the_http_api_breaks_the_contracts(tmp_path):
    tree = copy_project(tmp_path)
    engine = tree / "realtime" / "node" / "engine.py"
    engine.write_text(engine.read_text() + "\nfrom realtime.api import errors  # noqa: E402\n")
    result = lint_imports(tree)
    print(result.stdout[-1500:])
    assert result.returncode != 0
    assert "the node never imports the HTTP API, the server layer or the ORM BROKEN" in result.stdout
    assert "realtime.node.engine -> realtime.api.errors" in result.stdout


def test_a_cluster_driver_importing_the_engine_breaks_the_contracts(tmp_path):
    tree = copy_project(tmp_path)
    driver = tree / "realtime" / "cluster" / "local.py"
    driver.write_text(driver.read_text() + "\nfrom realtime.node.engine import Engine  # noqa: E402\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "cluster drivers never import the concrete engine" in result.stdout


def test_production_code_importing_test_helpers_breaks_the_contracts(tmp_path):
    tree = copy_project(tmp_path)
    command = tree / "apps_admin" / "management" / "commands" / "list_apps.py"
    command.write_text(command.read_text() + "\nfrom realtime.testing import LiveServer  # noqa: E402\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "nothing outside tests imports the test helpers BROKEN" in result.stdout
