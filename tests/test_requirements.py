"""Every third-party package the app imports is pinned in requirements.txt or requirements-nodeps.txt
(not left to arrive as somebody else's dependency)."""
import ast
import re
import sys
from importlib.metadata import packages_distributions

from helpers import ROOT


OPTIONAL = {"torchvision"}  # used when it works, never required (app/families.py)


def pinned() -> dict[str, str]:
    lines = [line for name in ("requirements.txt", "requirements-nodeps.txt")
             for line in (ROOT / name).read_text().splitlines()]
    pins = [re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line) for line in lines if line and not line.startswith("#")]
    return {m.group(1).lower().replace("_", "-"): m.group(2) for m in pins if m}


def imported_packages() -> set[str]:
    names = set()
    for path in list((ROOT / "app").glob("*.py")) + [ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"app", "__future__"} - OPTIONAL


def test_every_imported_package_is_pinned():
    dists = packages_distributions()
    pins = pinned()
    missing = {}
    for name in sorted(imported_packages()):
        owners = {d.lower().replace("_", "-") for d in dists.get(name, [name])}
        if not owners & set(pins):
            missing[name] = sorted(owners)
    assert not missing, f"imported but not pinned in requirements.txt: {missing}"
