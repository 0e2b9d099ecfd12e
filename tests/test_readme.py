"""README opens with the two commands a new user needs, and CI runs exactly the second one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def code_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_opens_with_install_and_test_commands():
    first, second = code_blocks((ROOT / "README.md").read_text(encoding="utf-8"))[:2]
    assert "pipx install" in first and "seesr upscale" in first
    assert "pytest" in second and second.count("\n") == 0


def test_ci_runs_exactly_the_readme_test_command():
    second = code_blocks((ROOT / "README.md").read_text(encoding="utf-8"))[1]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert second in ci, f".ci/run does not run the README's test command: {second}"
