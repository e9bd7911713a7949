"""Pickled checkpoints (.pth, .pt, .ckpt) load through torch's safe unpickler, from a local file, the
Hub and the app's Teacher box; a pickle that would run code is refused with the convert one-liner and
runs nothing; safetensors stay preferred where a repo has both."""
import math

import numpy as np
import pytest
import torch
from gradio_client import handle_file
from helpers import COFFEE
from hubserver import serving
from huggingface_hub import constants

from app.teachers.families import FAMILIES, import_spandrel
from app.teachers.loader import TeacherLoadError, load_teacher


import_spandrel()
from spandrel.architectures.Compact import Compact  # noqa: E402


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def compact_x2() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return Compact(num_feat=16, num_conv=4, upscale=2).eval().state_dict()


class WritesAMarker:
    """A pickle whose loading would create a file: the proof that code in a checkpoint ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def saved(tmp_path, name: str, content) -> bytes:
    torch.save(content, tmp_path / name)
    return (tmp_path / name).read_bytes()


@pytest.mark.parametrize("wrap", [lambda sd: sd, lambda sd: {"params_ema": sd, "iter": 5},
                                  lambda sd: {"state_dict": sd}, lambda sd: {"model": sd, "epoch": 3}])
def test_a_compact_x2_saved_with_torch_save_loads_from_a_local_pth(tmp_path, wrap):
    saved(tmp_path, "model.pth", wrap(compact_x2()))
    loaded = load_teacher(tmp_path / "model.pth")
    assert loaded.family == FAMILIES["Compact"] and loaded.scale == 2
    x = torch.rand(1, 3, 16, 16)
    twin = Compact(num_feat=16, num_conv=4, upscale=2).eval()
    twin.load_state_dict(compact_x2())
    assert torch.equal(loaded.model(x), twin(x))


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    saved(tmp_path, "model.pth", {"params_ema": compact_x2(), "payload": WritesAMarker(marker)})
    with pytest.raises(TeacherLoadError, match=r"model.pth of local file model.pth was refused by the safe unpickler, "
                                               r"which reads tensors and plain containers only .*To convert a "
                                               r"checkpoint you trust"):
        load_teacher(tmp_path / "model.pth")
    assert not marker.exists()


def test_the_hub_serves_a_pth_and_prefers_safetensors_where_a_repo_has_both(monkeypatch, tmp_path):
    from safetensors.torch import save_file

    marker = tmp_path / "ran"
    pth = saved(tmp_path, "x2.pth", compact_x2())
    evil = saved(tmp_path, "evil.pth", {"x": WritesAMarker(marker)})
    save_file({k: v.contiguous() for k, v in compact_x2().items()}, tmp_path / "x2.safetensors")
    repos = {"someone/pickled": {"RealESRGAN_x2.pth": pth, "README.md": b"# a card"},
             "someone/both": {"x2.safetensors": (tmp_path / "x2.safetensors").read_bytes(), "x2.pth": evil},
             "someone/evil": {"model.pth": evil}}
    with serving(monkeypatch, repos) as hub:
        loaded = load_teacher("someone/pickled")
        assert loaded.family == FAMILIES["Compact"] and loaded.card == "# a card"
        assert load_teacher("someone/pickled/RealESRGAN_x2.pth").scale == 2
        assert load_teacher("someone/both").scale == 2
        assert not any(path.endswith("/x2.pth") for method, path in hub.requests if method == "GET")
        with pytest.raises(TeacherLoadError, match="refused by the safe unpickler"):
            load_teacher("someone/evil")
    assert not marker.exists()


@pytest.mark.parametrize("content,message", [
    ([torch.zeros(3)], "holds no state dict of named tensors"),
    ({"params": {"step": 3}}, "holds no state dict of named tensors"),
    ({k: v.double() for k, v in compact_x2().items()}, "hold F64 tensors"),
    ({k: v.fill_(math.nan) if k.endswith("weight") else v for k, v in compact_x2().items()}, "not finite"),
])
def test_pickles_that_are_no_usable_checkpoint_say_why(tmp_path, content, message):
    saved(tmp_path, "model.pt", content)
    with pytest.raises(TeacherLoadError, match=message):
        load_teacher(tmp_path / "model.pt")


def test_a_truncated_pickle_is_refused_with_the_reason(tmp_path):
    data = saved(tmp_path, "model.ckpt", compact_x2())
    (tmp_path / "model.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(TeacherLoadError, match="refused by the safe unpickler"):
        load_teacher(tmp_path / "model.ckpt")


def test_the_apps_teacher_box_loads_a_pth_from_the_hub(monkeypatch, tmp_path, client):
    with serving(monkeypatch, {"someone/pickled-x2": {"model.pth": saved(tmp_path, "model.pth", compact_x2())}}):
        facts, *_ = client.predict(task="sr_x2", source="someone/pickled-x2", api_name="/load_teacher")
        assert "Real-ESRGAN Compact" in facts and "Hub repo someone/pickled-x2" in facts
        out = client.predict(task="sr_x2", image=handle_file(str(COFFEE)), already_degraded=False, seed=0, k=1, a=2.0,
                             layer="net.body.7", layout="channel", adaptive=False, tau=0.9, placement="inline",
                             api_name="/look")
    assert "teacher + ASVP: " in out[11] and np.isfinite(float(out[11].split(": ")[1].split(" dB")[0]))
