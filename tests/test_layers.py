"""Imports point one way: data -> networks -> defense -> attacker -> lab -> ui; nothing imports the ui.

Checked twice: statically (every `app.X` a module imports sits on its own layer or below) and in a
fresh interpreter per module (what importing it really pulls into sys.modules).
"""
import ast
import json
import subprocess
import sys

import pytest
from conftest import ROOT

LAYERS = {
    "data": ["thresholds", "devices", "images", "degrade", "tasks", "metrics", "testsets", "data"],
    "networks": ["modelcard", "nets", "families", "arches", "checkpoint", "hub"],
    "defense": ["asvp", "baselines", "bound"],
    "attacker": ["distill", "cores"],
    "lab": ["presets", "lab", "export", "measure", "search", "summary", "figures", "report", "recipe", "sweep", "experiments",
            "evaluate", "train", "bench"],
    "ui": ["plots", "ui"],
}
LEVEL = {module: level for level, names in enumerate(LAYERS.values()) for module in names}
CLIS = {"experiments", "evaluate", "train", "bench"}
BELOW_THE_LAB = [m for m, level in LEVEL.items() if level < LEVEL["presets"]] + ["presets"]
HEAVY = ("gradio", "plotly", "pandas")


def test_every_module_is_on_a_layer():
    modules = {p.stem for p in (ROOT / "app").glob("*.py")} - {"__init__"}
    assert modules == set(LEVEL)


def app_imports(module: str) -> set[str]:
    tree = ast.parse((ROOT / "app" / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "app":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("app."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("app.")}
    return found


@pytest.mark.parametrize("module", sorted(LEVEL))
def test_imports_point_down_the_layers(module):
    upward = {m for m in app_imports(module) if LEVEL[m] > LEVEL[module]}
    assert not upward, f"app.{module} ({list(LAYERS)[LEVEL[module]]}) imports a higher layer: {sorted(upward)}"
    assert "ui" not in app_imports(module) or module == "ui"


def imported_by(module: str) -> set[str]:
    code = f"import json, sys; import app.{module}; print(json.dumps(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(run.stdout.splitlines()[-1]))


def test_modules_below_the_lab_pull_in_no_ui_or_table_library():
    for module in BELOW_THE_LAB:
        loaded = imported_by(module)
        assert not [h for h in HEAVY if h in loaded], f"app.{module} imports {[h for h in HEAVY if h in loaded]}"
        if module in ("tasks", "hub"):
            assert "app.distill" not in loaded and "app.asvp" not in loaded, f"app.{module} imports the defense"
