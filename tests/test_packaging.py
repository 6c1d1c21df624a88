"""The package installs like one: declared imports, an SPDX licence, console commands, a set-up script asking once."""

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
OWN = {"fedhyper", "strategies", "clients", "simulations", "benchmarks", "scripts", "tests"}
SCANNED = ("fedhyper", "strategies", "clients", "simulations", "benchmarks", "scripts")


def imported_modules() -> set[str]:
    """Top-level names of every import in the packages, lazy ones inside functions included."""
    names = set()
    for folder in SCANNED:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names - OWN - set(sys.stdlib_module_names)


def declared() -> dict[str, Requirement]:
    project = PYPROJECT["project"]
    extras = [r for reqs in project["optional-dependencies"].values() for r in reqs]
    return {canonicalize_name(r.name): r for r in map(Requirement, [*project["dependencies"], *extras])}


def test_every_imported_package_is_declared_with_a_tested_range():
    requirements = declared()
    providers = importlib.metadata.packages_distributions()

    undeclared = {
        module: providers.get(module)
        for module in imported_modules()
        if not any(canonicalize_name(d) in requirements for d in providers.get(module, []))
    }

    assert undeclared == {}
    for name, req in requirements.items():
        operators = {s.operator for s in req.specifier}
        assert operators in ({"=="}, {">=", "<"}), f"{name}: {req.specifier} is not a closed range"
        installed = importlib.metadata.version(name)
        assert req.specifier.contains(installed, prereleases=True), f"{name} {installed} is outside {req.specifier}"


def test_the_licence_is_an_spdx_expression_with_the_apache_text_beside_it():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) > 180
    assert importlib.metadata.metadata("fedhyper")["License-Expression"] == "Apache-2.0"


def command(name: str) -> str:
    path = Path(sys.executable).parent / name
    assert path.is_file(), f"{path} is missing: install the project (make setup, or pip install -e .)"
    return str(path)


def test_the_console_commands_run_the_launchers_with_their_checks():
    runs = {
        "config": [command("fedhyper-run"), "--cfg", "job", "tracking=mlflow", "strategy=fedavg"],
        "bad run": [command("fedhyper-run"), "tracking=wandb"],
        "bad grid": [command("fedhyper-compare"), "engine=nope"],
        "deploy": [command("fedhyper-deploy"), "--help"],
    }
    started = {k: subprocess.Popen(c, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for k, c in runs.items()}  # fmt: skip
    done = {k: (p.wait(timeout=300), *p.communicate()) for k, p in started.items()}

    code, out, err = done["config"]
    assert code == 0, err[-2000:]
    assert re.search(r"tracking:\n  backend: mlflow\n", out) and "name: fedavg" in out  # Hydra found its configs
    code, out, err = done["bad run"]
    assert (code, err) == (2, "config error: tracking='wandb' is unknown; choose one of mlflow, none, tensorboard\n")
    code, out, err = done["bad grid"]
    assert code == 2 and err.startswith("config error: engine='nope' is unknown")
    code, out, err = done["deploy"]
    assert code == 0 and "--nodes" in out


def setup_copy(tmp_path: Path, tools: list[str], uid: str) -> tuple[Path, dict[str, str]]:
    """scripts/setup.sh in a folder where the data is absent, the venv is installed, and PATH holds only ``tools``."""
    root, venv, bin_dir = tmp_path / "repo", tmp_path / "repo" / ".venv", tmp_path / "bin"
    (root / "scripts").mkdir(parents=True)
    script = (REPO / "scripts" / "setup.sh").read_text()
    script = script.replace("/usr/share/datasets/fashion-mnist", str(tmp_path / "absent"))
    (root / "scripts" / "setup.sh").write_text(script)
    (root / "pyproject.toml").write_text("")
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\necho torch x / flwr y\n")
    (venv / ".fedhyper-installed").touch()  # newer than pyproject.toml: no reinstall
    bin_dir.mkdir()
    for tool in ("dirname", "mkdir", "touch", "sh", *tools):
        os.symlink(shutil.which(tool) or tool, bin_dir / tool)
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "apt-calls"}\nexit 100\n')
    for fake in ("id", "apt-get"):
        (bin_dir / fake).chmod(0o755)
    (venv / "bin" / "python").chmod(0o755)
    return root / "scripts" / "setup.sh", {"PATH": str(bin_dir), "HOME": str(tmp_path)}


def run_setup(script: Path, env: dict[str, str]) -> list[str]:
    result = subprocess.run(["/bin/bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_a_failed_apt_get_is_tried_once_and_each_call_says_where_the_data_will_come_from(tmp_path):
    script, env = setup_copy(tmp_path, [], uid="0")

    first, second = run_setup(script, env), run_setup(script, env)

    assert (tmp_path / "apt-calls").read_text() == "update -qq\n"  # once: the second call did not retry
    assert first[1].startswith("setup: could not install dataset-fashion-mnist; Fashion-MNIST will be downloaded")
    assert second[0].startswith("setup: dataset-fashion-mnist could not be installed before (remove ")
    assert second[1] == "setup: ready (torch x / flwr y)"


def test_a_machine_without_apt_get_or_root_gets_one_line_about_the_data(tmp_path):
    script, env = setup_copy(tmp_path, [], uid="1000")  # no sudo on PATH
    (tmp_path / "bin" / "apt-get").unlink()

    no_apt = run_setup(script, env)
    (tmp_path / "bin" / "apt-get").symlink_to("/bin/false")
    no_root = run_setup(script, env)

    assert no_apt[0].startswith("setup: no apt-get on this machine, so ") and "Hugging Face hub" in no_apt[0]
    assert no_root[0].startswith("setup: installing ") and "needs root" in no_root[0] and "Hugging Face" in no_root[0]
    assert len(no_apt) == len(no_root) == 2 and not (tmp_path / "apt-calls").exists()
