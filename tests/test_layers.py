"""Imports point one way: data -> teachers -> defense -> attack -> study -> lab -> the command lines ->
ui; nothing imports the ui. The layers are the sub-packages of app/ (read from the folder), plus a few
top-level modules placed here.

Checked twice: statically (every `app.X` a module imports sits on its own layer or below) and in a
copy of an interpreter per module (what importing it really pulls into sys.modules).
"""
import ast
import json
import subprocess
import sys

import pytest
from helpers import ROOT


PACKAGES = ["data", "teachers", "defense", "attack", "study", "lab", "ui"]  # lowest first
TOP_LEVEL = {"devices": "data", "experiments": "lab", "train": "lab", "evaluate": "lab", "bench": "lab"}
CLIS = {"experiments", "train", "evaluate", "bench"}  # entry points: nothing in the package imports them
LEVEL = {p: n for n, p in enumerate(PACKAGES)}
BELOW_THE_STUDY = [p for p in PACKAGES if LEVEL[p] < LEVEL["study"]]
HEAVY = ("gradio", "plotly", "pandas")


def modules() -> dict[str, str]:
    """Every module of the package (dotted, without `app.`) -> its layer."""
    found = {}
    for path in (ROOT / "app").rglob("*.py"):
        parts = path.relative_to(ROOT / "app").with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) == 1:
            continue
        name = ".".join(p for p in parts if p != "__init__")
        found[name] = parts[0] if len(parts) > 1 else TOP_LEVEL.get(name, "?")
    return found


MODULES = modules()


def test_every_module_is_on_a_layer_and_every_package_is_one():
    assert {p.name for p in (ROOT / "app").iterdir() if (p / "__init__.py").exists()} == set(PACKAGES)
    assert not [m for m, layer in MODULES.items() if layer == "?"], "a top-level module outside TOP_LEVEL"
    assert len([m for m in MODULES if "." not in m and m not in PACKAGES]) <= 5  # a handful at the top


def app_imports(module: str) -> set[str]:
    """The app modules `module` imports, as dotted names without `app.`."""
    path = ROOT / "app" / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / "app" / module.replace(".", "/") / "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and (node.module == "app" or node.module.startswith("app.")):
            base = node.module.removeprefix("app").removeprefix(".")
            found |= {f"{base}.{a.name}".strip(".") if f"{base}.{a.name}".strip(".") in MODULES else base
                      for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("app.") for a in node.names if a.name.startswith("app.")}
    return found


def layer_of(module: str) -> str:
    return MODULES.get(module) or module.split(".")[0]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module):
    rank = lambda m: LEVEL[layer_of(m)] + (0.5 if m in CLIS else 0)  # a command line sits above its layer
    upward = {m for m in app_imports(module) if rank(m) > rank(module)}
    assert not upward, f"app.{module} ({layer_of(module)}) imports a higher layer: {sorted(upward)}"
    assert not {m for m in app_imports(module) if layer_of(m) == "ui"} or layer_of(module) == "ui"
    assert not {m for m in app_imports(module) if m in CLIS}, f"app.{module} imports a command line"


# one interpreter imports numpy and torch once (every module below the study imports them, and neither pulls in
# a HEAVY library), then forks a copy per module to import it in: what the module pulls in, for a fraction of a
# fresh interpreter's start each
FORKED = """
import json, os, sys, traceback
import numpy, torch
found = {}
for name in sys.argv[1:]:
    read, write = os.pipe()
    if os.fork() == 0:
        os.close(read)
        try:
            __import__("app." + name)
            with os.fdopen(write, "w") as pipe:
                json.dump(sorted(sys.modules), pipe)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        found[name] = pipe.read()
    _, status = os.waitpid(-1, 0)
    if status:
        sys.exit(f"importing app.{name} failed")
print(json.dumps({name: json.loads(loaded) for name, loaded in found.items()}))
"""


def imported_by(modules: list[str]) -> dict[str, set[str]]:
    """What importing each module pulls into sys.modules, each in a copy of an interpreter that holds only
    numpy and torch besides the standard library."""
    run = subprocess.run([sys.executable, "-c", FORKED, *modules], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    return {name: set(loaded) for name, loaded in json.loads(run.stdout.splitlines()[-1]).items()}


def test_modules_below_the_study_pull_in_no_ui_or_table_library():
    found = imported_by(sorted(m for m, layer in MODULES.items() if layer in BELOW_THE_STUDY and "." in m))
    assert len(found) > 20
    for module, loaded in found.items():
        assert not [h for h in HEAVY if h in loaded], f"app.{module} imports {[h for h in HEAVY if h in loaded]}"
        if module in ("data.tasks", "teachers.loader"):
            assert "app.attack.distill" not in loaded and "app.defense.asvp" not in loaded, \
                f"app.{module} imports the defense"


def test_importing_the_app_makes_no_thread_pool():
    """Pools are made on first use: the offline search imports the lab's neighbours without one."""
    code = ("import concurrent.futures as cf, sys; made = []; init = cf.ThreadPoolExecutor.__init__\n"
            "def counted(self, *a, **k):\n"
            "    made.append(sys._getframe(1).f_globals['__name__']); init(self, *a, **k)\n"
            "cf.ThreadPoolExecutor.__init__ = counted\n"
            "import app.ui.demo, app.study.cli; print([m for m in made if m.startswith('app.')])")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert run.stdout.strip().splitlines()[-1] == "[]"
