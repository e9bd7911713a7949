"""spandrel imports whether or not a working torchvision is there (app.teachers.families explains the route).

Each case runs in a fresh interpreter: with none installed (this project's own install), with a
working one (stood in for by a tiny package on PYTHONPATH: spandrel must get it untouched), and with
a broken one (the CUDA build pip picks for a CPU torch fails at import with a RuntimeError)."""
import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT


PROBE = """
import importlib.util, json, sys
from app.teachers.families import import_spandrel
spandrel = import_spandrel()
lama = sys.modules["spandrel.architectures.LaMa.__arch.LaMa"]
try:
    lama.rotate(None, 0.0)
    calling = "ran"
except ImportError as e:
    calling = "ImportError: " + str(e)
print(json.dumps({"version": spandrel.__version__, "loaded": "torchvision" in sys.modules,
                  "findable": importlib.util.find_spec("torchvision") is not None, "calling": calling,
                  "registry": len(spandrel.MAIN_REGISTRY)}))
"""
WORKING = {"__init__.py": "", "transforms/__init__.py": "",
           "transforms/functional.py": "class InterpolationMode:\n    BILINEAR = 'bilinear'\n"
                                       "def rotate(img, angle, **kw):\n    return 'rotated by the real one'\n"
                                       "def normalize(img, mean, std):\n    return img\n"}
BROKEN = {"__init__.py": "from torchvision import _meta\n",
          "_meta.py": "raise RuntimeError('operator torchvision::nms does not exist')\n"}


def run_probe(tmp_path, package: dict | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if package is not None:
        for rel, text in package.items():
            (tmp_path / "torchvision" / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "torchvision" / rel).write_text(text)
        env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{ROOT}"
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1])


@pytest.fixture(autouse=True)
def no_torchvision_here():
    """The project installs spandrel without torchvision; these cases put one on the path themselves."""
    import importlib.util

    assert importlib.util.find_spec("torchvision") is None, "a torchvision is installed: see README (spandrel)"


def test_without_torchvision_spandrel_imports_and_leaves_no_trace(tmp_path):
    r = run_probe(tmp_path, None)
    assert r["version"] and r["registry"] > 30
    assert not r["loaded"] and not r["findable"]  # other libraries' probes still see no torchvision
    assert r["calling"].startswith("ImportError: torchvision.transforms.functional.rotate needs torchvision")


def test_with_a_working_torchvision_spandrel_uses_it(tmp_path):
    r = run_probe(tmp_path, WORKING)
    assert r["loaded"] and r["calling"] == "ran"


def test_with_a_broken_torchvision_spandrel_still_imports(tmp_path):
    r = run_probe(tmp_path, BROKEN)
    assert r["version"] and not r["loaded"] and r["calling"].startswith("ImportError")
