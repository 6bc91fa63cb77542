"""The README's embedding recipes, run as they are under a real uvicorn process."""

from __future__ import annotations

import os
import re
import signal
from functools import partial
from pathlib import Path

import pytest

from .conftest import BODY_D, CONFIG_D, wait_until
from .processes import PYTHON, free_port, running
from .rawhttp import serves

README = Path(__file__).parent.parent / "README.md"
RECIPES = [
    block
    for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    if 'create_app("policies.yaml")' in block
]


def test_the_readme_has_both_recipes() -> None:
    assert [("FastAPI" in block) for block in RECIPES] == [False, True]


@pytest.mark.parametrize("recipe", RECIPES, ids=["starlette", "fastapi"])
def test_recipe_serves_and_reloads_when_mounted(recipe: str, tmp_path: Path) -> None:
    (tmp_path / "recipe.py").write_text(recipe)
    policies = tmp_path / "policies.yaml"
    policies.write_text(CONFIG_D)
    port = free_port()
    argv = [PYTHON, "-m", "uvicorn", "recipe:app", "--port", str(port), "--app-dir", str(tmp_path)]
    with running(argv, tmp_path / "uvicorn.log", "127.0.0.1", port, cwd=tmp_path) as server:
        assert serves(port, BODY_D)
        new = tmp_path / "new.yaml"
        new.write_text(CONFIG_D.replace("mode: enforce", "mode: testing"))
        os.replace(new, policies)
        expected = BODY_D.replace(b"mode: enforce", b"mode: testing")
        wait_until(partial(serves, port, expected))
        # Shutting the parent down leaves nothing behind that keeps the process alive.
        # uvicorn shuts down gracefully, then re-raises SIGTERM to exit by it.
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(10) in (0, -signal.SIGTERM)
    assert "Finished server process" in server.output()
    assert "Traceback" not in server.output()
