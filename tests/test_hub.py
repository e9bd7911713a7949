"""Teacher loading: bundled folders, the Hub's download code over loopback, cache, fallback, errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from app.hub import MAX_PARAMS, TeacherLoadError, bundled_teachers, load_folder, load_teacher
from app.nets import UNetTeacher
from tests.hub_server import HubServer

ROOT = Path(__file__).resolve().parent.parent
X = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def tiny_teacher():
    torch.manual_seed(1)
    return UNetTeacher(width=4, blocks=(1, 1, 1)).eval()


def repo_files(model) -> dict[str, bytes]:
    files = {"config.json": json.dumps({**model._hub_mixin_config, "architecture": "UNetTeacher"}).encode()}
    tmp = ROOT / "test-artifacts"
    tmp.mkdir(exist_ok=True)
    save_file(model.state_dict(), tmp / "w.safetensors")
    files["model.safetensors"] = (tmp / "w.safetensors").read_bytes()
    files["README.md"] = b"# tiny\n<!-- quality:start -->\n+1 dB\n<!-- quality:end -->\n"
    return files


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


LOAD_SCRIPT = """
import json, pickle, sys, torch
def refuse(*a, **k):
    raise AssertionError("something tried to unpickle")
torch.load = pickle.load = pickle.loads = refuse
from app.hub import TeacherLoadError, load_teacher
try:
    t = load_teacher(sys.argv[1])
    y = t.model(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    print(json.dumps({"origin": t.origin, "warning": t.warning, "quality": t.quality, "sum": y.sum().item()}))
except TeacherLoadError as e:
    print(json.dumps({"error": str(e)}))
"""


def load_in_subprocess(repo_id: str, cache: Path, endpoint: str | None, offline: bool) -> dict:
    """huggingface_hub reads its endpoint and offline flag at import: a fresh interpreter per setting."""
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1" if offline else "0",
           "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "5"}
    env.pop("HF_ENDPOINT", None)
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    out = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, repo_id], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    model = tiny_teacher()
    good = repo_files(model)
    pickle_only = {"config.json": good["config.json"], "pytorch_model.bin": b"\x80\x04not really a pickle"}
    with HubServer({"lab/tiny-teacher": good, "lab/pickle-only": pickle_only}) as server:
        yield server, model, tmp_path_factory.mktemp("hf-cache")


def test_bundled_teachers_are_listed_and_load():
    assert {"dehaze", "derain", "sr_x2", "sr_x4"} <= set(bundled_teachers())
    t = load_teacher("dehaze")
    assert t.architecture == "UNetTeacher" and t.origin == "bundled models/dehaze" and not t.warning


def test_local_folder_round_trip(tmp_path):
    model = tiny_teacher()
    loaded = load_folder(write_folder(tmp_path / "t", repo_files(model)), "a test folder")
    with torch.no_grad():
        assert torch.equal(loaded.model(X), model(X))
    assert loaded.quality == "+1 dB"


def test_download_over_loopback_hub_then_offline_cache(hub):
    server, model, cache = hub
    online = load_in_subprocess("lab/tiny-teacher", cache, server.url, offline=False)
    with torch.no_grad():
        expected = model(X).sum().item()
    assert online["origin"].startswith("Hub repo lab/tiny-teacher @ 0123456789")
    assert online["sum"] == pytest.approx(expected, rel=1e-6) and online["quality"] == "+1 dB"
    assert any(p.endswith("/resolve/main/model.safetensors") for _, p in server.requests)
    # the cache is now filled: offline, with no endpoint at all, the same teacher loads
    cached = load_in_subprocess("lab/tiny-teacher", cache, None, offline=True)
    assert cached["sum"] == pytest.approx(expected, rel=1e-6) and not cached["warning"]


def test_pickle_only_repo_is_refused_without_download(hub):
    server, _, cache = hub
    out = load_in_subprocess("lab/pickle-only", cache, server.url, offline=False)
    assert "only a pickle checkpoint" in out["error"] and "never unpickles" in out["error"]
    assert ("GET", "/lab/pickle-only/resolve/main/pytorch_model.bin") not in server.requests


def test_unknown_repo_is_a_clear_error(hub):
    server, _, cache = hub
    out = load_in_subprocess("lab/does-not-exist", cache, server.url, offline=False)
    assert out["error"] == "Hub repo lab/does-not-exist (revision main) was not found or is private"


def test_unreachable_hub_falls_back_to_the_bundled_copy(tmp_path):
    out = load_in_subprocess("someone/asvp-dehaze", tmp_path, "http://127.0.0.1:9", offline=False)
    assert "unreachable" in out["warning"] and "bundled dehaze" in out["warning"]
    assert out["origin"].startswith("bundled models/dehaze")
    none = load_in_subprocess("someone/mystery", tmp_path, None, offline=True)
    assert "unreachable" in none["error"] and "neither cached nor a bundled task" in none["error"]


@pytest.mark.parametrize("source", ["../models/dehaze", "lab/../../etc", "/etc/passwd", "a/b/c"])
def test_paths_are_not_repo_ids(source):
    with pytest.raises(TeacherLoadError, match="not a Hub repo id|neither a bundled task"):
        load_teacher(source)


def bad_config_folder(tmp_path, config_text: str) -> Path:
    files = repo_files(tiny_teacher())
    files["config.json"] = config_text.encode()
    return write_folder(tmp_path / "bad", files)


@pytest.mark.parametrize("config,message", [
    ('{"architecture": "Evil", "width": 4}', "architecture 'Evil' is not allowed"),
    ("{not json", "not valid JSON"),
    ('["a", "list"]', "must hold a JSON object"),
    ('{"architecture": "UNetTeacher", "width": 4, "exec": "rm -rf /"}', "unknown keys for UNetTeacher: exec"),
    ('{"architecture": "UNetTeacher", "width": "wide"}', "not a valid UNetTeacher config"),
    ('{"architecture": "UNetTeacher", "width": 4096}', f"limit {MAX_PARAMS:,}"),
])
def test_bad_configs_are_refused_before_building(tmp_path, config, message):
    with pytest.raises(TeacherLoadError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_folder(bad_config_folder(tmp_path, config), "test folder")


def test_weights_that_do_not_match_the_config(tmp_path):
    files = repo_files(tiny_teacher())
    files["config.json"] = json.dumps({"architecture": "UNetTeacher", "width": 8, "blocks": [1, 1, 1]}).encode()
    with pytest.raises(TeacherLoadError, match="do not match its config"):
        load_folder(write_folder(tmp_path / "mismatch", files), "test folder")


def test_local_pickle_only_folder(tmp_path):
    folder = write_folder(tmp_path / "p", {"config.json": b"{}", "pytorch_model.bin": b"\x80\x04junk"})
    with pytest.raises(TeacherLoadError, match="only a pickle checkpoint"):
        load_folder(folder, "test folder")
