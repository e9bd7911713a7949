"""Teacher loading: bundled folders, the HF cache, the real download code over loopback, fallback, refusals.

Nothing here touches the network: huggingface_hub is offline unless a test points its endpoint at a
loopback server, and every teacher is a tiny one built in tmp_path (the real ones may not exist yet).
"""
import json
import pickle
import socket
from pathlib import Path

import pytest
import torch
from hubserver import COMMIT, serving, use_endpoint
from huggingface_hub import constants
from safetensors.torch import save_file

from app.teachers import loader as hub
from app.teachers import registry
from app.teachers.loader import MAX_BYTES, MAX_PARAMS, MAX_SETTING, TeacherLoadError, load_teacher, save_teacher
from app.teachers.networks import QuickStudent, UNetTeacher, count_params
from app.teachers.registry import bundled


CARD = "# tiny teacher\n<!-- quality:start -->\n+1 dB\n<!-- quality:end -->\n"
X = torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(0))


def tiny_teacher(seed: int) -> UNetTeacher:
    torch.manual_seed(seed)
    return UNetTeacher(width=4, blocks=(1, 1, 1)).eval()


def teacher_files(model, folder: Path) -> dict[str, bytes]:
    """What a Hub repo of this teacher holds, written through the same save path as training uses."""
    save_teacher(model, folder)
    (folder / "README.md").write_text(CARD)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def same_output(a, b) -> bool:
    with torch.no_grad():
        return torch.equal(a(X), b(X))


@pytest.fixture(autouse=True)
def lab(monkeypatch, tmp_path):
    """Offline, an empty HF cache, and a models/ folder with a tiny dehaze teacher (lowlight untrained)."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(registry, "MODELS", tmp_path / "models")
    dehaze = tiny_teacher(seed=1)
    teacher_files(dehaze, tmp_path / "models" / "dehaze")
    write_folder(tmp_path / "models" / "lowlight", {"train.log": b"still training\n"})
    return dehaze


@pytest.fixture
def source(tmp_path):
    """The teacher every Hub test serves, and its files."""
    model = tiny_teacher(seed=2)
    return model, teacher_files(model, tmp_path / "source")


class Bomb:
    def __reduce__(self):
        return explode, ()


def explode():
    raise AssertionError("a checkpoint was unpickled")


@pytest.fixture
def no_unpickling(monkeypatch):
    for module, name in [(torch, "load"), (pickle, "load"), (pickle, "loads")]:
        monkeypatch.setattr(module, name, lambda *a, **k: explode())


@pytest.fixture
def loopback_hub(monkeypatch, source):
    """A Hub on 127.0.0.1 serving a few repos; shut down after the test."""
    with serving(monkeypatch, {
        "lab/tiny-teacher": source[1],
        "lab/no-config": {"model.safetensors": source[1]["model.safetensors"]},
        "lab/config-only": {"config.json": source[1]["config.json"]},
        "lab/pickle-only": {"config.json": source[1]["config.json"], "pytorch_model.bin": pickle.dumps(Bomb())},
        "lab/huge": {**source[1], "model.safetensors": bytes(MAX_BYTES["model.safetensors"] + 1)},
    }) as server:
        yield server


def test_bundled_teachers_are_the_folders_with_weights(tmp_path):
    assert {name: t.folder for name, t in bundled().items()} == {"dehaze": tmp_path / "models" / "dehaze"}


def test_bundled_and_local_folders_round_trip(lab, tmp_path):
    loaded = load_teacher("dehaze")
    assert same_output(loaded.model, lab) and not loaded.model.training
    assert (loaded.origin, loaded.warning, loaded.architecture) == ("bundled models/dehaze", "", "UNetTeacher")
    assert loaded.params == count_params(lab) and loaded.config["blocks"] == [1, 1, 1]
    assert loaded.quality == "+1 dB"
    assert load_teacher(str(tmp_path / "models" / "dehaze")).origin == "bundled models/dehaze"
    elsewhere = write_folder(tmp_path / "elsewhere", teacher_files(tiny_teacher(seed=3), tmp_path / "src3"))
    local = load_teacher(elsewhere)  # a Path, from code
    assert same_output(local.model, tiny_teacher(seed=3)) and local.origin.startswith("local folder")


def test_a_student_with_its_flag_and_slope_round_trips(tmp_path):
    torch.manual_seed(0)
    student = QuickStudent(width=4, scale=2, dilated=False, leak=0.1).eval()
    save_teacher(student, tmp_path / "student")
    loaded = load_teacher(tmp_path / "student")
    assert loaded.config["dilated"] is False and loaded.config["leak"] == 0.1
    assert same_output(loaded.model, student)


def test_a_task_without_a_bundled_teacher_says_how_to_train_it():
    with pytest.raises(TeacherLoadError, match="no bundled lowlight teacher yet: train it"):
        load_teacher("lowlight")


def test_offline_load_from_a_prefilled_hf_cache(tmp_path, source):
    repo = tmp_path / "hf-cache" / "models--owner--tiny"
    write_folder(repo / "snapshots" / COMMIT, source[1])
    write_folder(repo / "refs", {"main": COMMIT.encode()})
    for revision in (None, COMMIT):
        loaded = load_teacher("owner/tiny", revision=revision)
        assert loaded.origin == f"Hub repo owner/tiny @ {COMMIT}" and not loaded.warning
        assert same_output(loaded.model, source[0]) and loaded.quality == "+1 dB"


def test_download_over_a_loopback_hub_then_from_cache_offline(monkeypatch, tmp_path, source, loopback_hub):
    loaded = load_teacher("lab/tiny-teacher")
    assert loaded.origin == f"Hub repo lab/tiny-teacher @ {COMMIT}" and not loaded.warning
    assert same_output(loaded.model, source[0]) and loaded.quality == "+1 dB"
    gets = {path for method, path in loopback_hub.requests if method == "GET"}
    assert {f"/lab/tiny-teacher/resolve/main/{f}" for f in ("config.json", "model.safetensors", "README.md")} <= gets
    snapshot = tmp_path / "hf-cache" / "models--lab--tiny-teacher" / "snapshots" / COMMIT
    assert (snapshot / "model.safetensors").read_bytes() == source[1]["model.safetensors"]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    served = len(loopback_hub.requests)
    assert same_output(load_teacher("lab/tiny-teacher").model, source[0])
    assert len(loopback_hub.requests) == served  # the second load came from the cache alone


@pytest.fixture
def refused_port(monkeypatch):
    """An endpoint where nothing listens; huggingface_hub's retry back-off is skipped to keep this fast."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    use_endpoint(monkeypatch, f"http://127.0.0.1:{port}")
    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", lambda seconds: None)


@pytest.mark.parametrize("unreachable", ["offline mode", "connection refused"])
def test_unreachable_hub_falls_back_to_the_bundled_teacher(request, lab, unreachable):
    if unreachable == "connection refused":
        request.getfixturevalue("refused_port")
    loaded = load_teacher("someone/asvp-dehaze")
    assert loaded.origin == "Hub unreachable: fell back to bundled models/dehaze"
    assert "could not be reached" in loaded.warning and "someone/asvp-dehaze" in loaded.warning
    assert same_output(loaded.model, lab)


def test_fallback_task_argument_and_nothing_to_fall_back_to(lab):
    assert same_output(load_teacher("someone/my-net", fallback_task="dehaze").model, lab)
    for repo_id in ("someone/my-net", "someone/asvp-lowlight"):  # no task in the name; task not bundled
        with pytest.raises(TeacherLoadError, match="unreachable.*no bundled teacher to fall back to"):
            load_teacher(repo_id)


@pytest.mark.parametrize("repo_id,revision,message", [
    ("lab/does-not-exist", None, "Hub repo lab/does-not-exist was not found"),
    ("lab/tiny-teacher", "v9", "Hub repo lab/tiny-teacher has no revision 'v9'"),
    # without config.json, the one .safetensors file is read as a bare checkpoint of a field family
    ("lab/no-config", None, "the weights of Hub repo lab/no-config .* match no architecture the lab knows"),
    ("lab/config-only", None, "Hub repo lab/config-only has no model.safetensors$"),
])
def test_unknown_repos_revisions_and_missing_files(loopback_hub, repo_id, revision, message):
    with pytest.raises(TeacherLoadError, match=message):
        load_teacher(repo_id, revision=revision)


def test_oversized_weights_are_refused_before_download(loopback_hub):
    with pytest.raises(TeacherLoadError, match=r"model.safetensors of Hub repo lab/huge is .* bytes; the limit"):
        load_teacher("lab/huge")
    assert ("GET", "/lab/huge/resolve/main/model.safetensors") not in loopback_hub.requests


def test_pickle_only_repo_is_refused_without_unpickling(loopback_hub, no_unpickling):
    with pytest.raises(TeacherLoadError, match=r"only pickles of another kind \(pytorch_model.bin\); the lab reads "
                                               r".safetensors, .pth, .pt, .ckpt files only"):
        load_teacher("lab/pickle-only")
    assert not any(path.endswith("pytorch_model.bin") for _, path in loopback_hub.requests)


def test_our_layout_with_a_pickle_for_weights_is_refused_without_unpickling(tmp_path, no_unpickling):
    folder = write_folder(tmp_path / "pickled", {"config.json": b"{}", "model.pt": pickle.dumps(Bomb())})
    with pytest.raises(TeacherLoadError, match=r"has no model.safetensors"):
        load_teacher(folder)


@pytest.fixture
def weights_never_read(monkeypatch):
    monkeypatch.setattr(hub, "load_file", lambda *a, **k: pytest.fail("weights were read"))


@pytest.mark.parametrize("config,message", [
    ("{not json", "config.json of .* is not valid JSON"),
    ('["a", "list"]', "must hold a JSON object"),
    ('{"width": 4}', "architecture None is not allowed; known: UNetTeacher, QuickStudent"),
    ('{"architecture": "Evil", "width": 4}', "architecture 'Evil' is not allowed"),
    ('{"architecture": "UNetTeacher", "width": 4, "exec": "rm -rf /"}', "unknown keys for UNetTeacher: exec"),
    ('{"architecture": "UNetTeacher", "width": "wide"}', "needs width as a whole number from 1 to .*, not 'wide'"),
    ('{"architecture": "UNetTeacher", "width": true}', "needs width as a whole number"),
    ('{"architecture": "UNetTeacher", "width": 4.5}', "needs width as a whole number"),
    ('{"architecture": "UNetTeacher", "width": 0}', "needs width as a whole number from 1"),
    ('{"architecture": "UNetTeacher", "blocks": [1, 1]}', "needs blocks as a list of 3 whole numbers"),
    ('{"architecture": "UNetTeacher", "blocks": "111"}', "needs blocks as a list of 3 whole numbers"),
    ('{"architecture": "QuickStudent", "dilated": 1}', "needs dilated as true or false, not 1"),
    ('{"architecture": "QuickStudent", "leak": 1e300}', "needs leak as a number from 0 to 1"),
    ('{"architecture": "QuickStudent", "leak": "0.1"}', "needs leak as a number from 0 to 1"),
])
def test_malformed_configs_are_refused(tmp_path, source, weights_never_read, config, message):
    folder = write_folder(tmp_path / "bad", {**source[1], "config.json": config.encode()})
    with pytest.raises(TeacherLoadError, match=message):
        load_teacher(folder)


@pytest.mark.parametrize("config,message", [
    ({"width": 4096}, f"needs width as a whole number from 1 to {MAX_SETTING}"),
    ({"width": 4, "blocks": [1, 1, 100_000]}, f"needs blocks as a list of 3 whole numbers from 1 to {MAX_SETTING}"),
    ({"width": 200}, f"asks for a UNetTeacher with [0-9,]+ parameters; the limit is {MAX_PARAMS:,}"),
    ({"width": 8, "scale": 200}, "parameters; the limit is"),
])
def test_oversized_configs_are_refused_without_allocating(monkeypatch, tmp_path, source, weights_never_read,
                                                          config, message):
    built_on = []
    monkeypatch.setattr(torch.nn.init, "kaiming_uniform_", lambda t, *a, **k: built_on.append(t.device.type) or t)
    config = json.dumps({"architecture": "UNetTeacher", **config}).encode()
    with pytest.raises(TeacherLoadError, match=message):
        load_teacher(write_folder(tmp_path / "big", {**source[1], "config.json": config}))
    assert set(built_on) <= {"meta"}  # sized on the meta device only, never built for real


@pytest.mark.parametrize("change,message", [
    ({"config.json": b'{"architecture": "UNetTeacher", "width": 8, "blocks": [1, 1, 1]}'}, "size mismatch for"),
    ("extra tensor", 'Unexpected key\\(s\\) in state_dict: "extra"'),
])
def test_weights_that_do_not_match_the_config(tmp_path, source, change, message):
    if change == "extra tensor":
        save_file({**source[0].state_dict(), "extra": torch.zeros(2)}, tmp_path / "extra.safetensors")
        change = {"model.safetensors": (tmp_path / "extra.safetensors").read_bytes()}
    with pytest.raises(TeacherLoadError, match=f"weights of local folder .* do not match its config.json: .*{message}"):
        load_teacher(write_folder(tmp_path / "mismatch", {**source[1], **change}))


def test_weights_that_are_not_safetensors(tmp_path, source):
    files = {**source[1], "model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage"}
    with pytest.raises(TeacherLoadError, match="model.safetensors of local folder .* is not a valid safetensors file"):
        load_teacher(write_folder(tmp_path / "garbage", files))


@pytest.mark.parametrize("text", ["../models/dehaze", "lab/../../etc", "/etc/passwd", "..\\evil",
                                  "owner/na me", "", "models/../models/dehaze", "owner/name\x00", "own\ner/name"])
def test_paths_and_traversal_are_not_repo_ids(monkeypatch, text):
    monkeypatch.setattr(hub, "hf_hub_download", lambda *a, **k: pytest.fail("the Hub was asked"))
    with pytest.raises(TeacherLoadError, match="is neither a bundled teacher \\(dehaze\\) nor a Hub repo id"):
        load_teacher(text)
    with pytest.raises(TeacherLoadError, match="is not a revision"):
        load_teacher("owner/name", revision="../../../etc")
