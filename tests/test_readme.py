"""README.md's set-up commands: what a new user runs is what CI runs, and installs from a clone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def _setup_lines() -> list[str]:
    """The command lines of the README's set-up section (its fenced blocks, comments left out)."""
    section = README.split("## Set-up: the two commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line for block in blocks for line in block.splitlines() if line and not line.startswith("#")]


def test_the_test_commands_install_and_run_what_ci_does() -> None:
    extras = re.search(r'pip install -q -e "(\.\[[a-z,]+\])"', CI).group(1)
    pytest_command = next(line.strip() for line in CI.splitlines() if line.strip().startswith("python -m pytest"))
    tests = [line for line in _setup_lines() if "pytest" in line]
    assert len(tests) == 2, tests  # CPU only, and CUDA
    for line in tests:
        assert f'pip install -e "{extras}"' in line and line.endswith(f"&& {pytest_command}"), line


def test_cpu_lines_install_the_torch_ci_tests_with_from_its_cpu_index() -> None:
    pin = re.search(r"pip install -q (torch==[0-9.]+)", CI).group(1)
    lines = _setup_lines()
    cpu = [line for line in lines if "torch" in line]
    assert len(cpu) == 2 and len(lines) == 4, lines
    for line in cpu:
        assert line.startswith(f"pip install {pin} --index-url https://download.pytorch.org/whl/cpu && pip install "), line


def test_the_main_job_restores_a_photo_the_repository_ships() -> None:
    jobs = [line for line in _setup_lines() if "oldphoto restore" in line]
    assert len(jobs) == 2
    for line in jobs:
        photo = re.search(r"oldphoto restore (\S+)", line).group(1)
        assert (ROOT / photo).is_file(), photo


def test_extras_are_installed_from_the_clone_not_from_the_package_index() -> None:
    assert not re.search(r"""pip install ["']?oldphoto\[""", README)
    for extra in ("ui", "faces", "ray"):
        assert f'pip install ".[{extra}]"' in README
