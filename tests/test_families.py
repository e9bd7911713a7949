"""Field architectures: each allowed family, as a small random instance saved as safetensors, loads
from a local file and over the loopback Hub, is detected as itself, offers its feature maps (no
attention or gate tensors) and, with a = 1, serves bit for bit what it served without the hooks.
Bad checkpoints get a user's message (pickles: tests/test_pickles.py)."""
import json
import re
import struct

import pytest
import torch
from hubserver import serving
from huggingface_hub import constants
from safetensors.torch import save_file

from app.defense.asvp import defend
from app.defense.setting import Setting
from app.teachers import sessions
from app.teachers.families import FAMILIES, import_spandrel
from app.teachers.layers import hidden_multiple, hookable_layers
from app.teachers.loader import TeacherLoadError, load_teacher


spandrel = import_spandrel()
from spandrel.architectures.Compact import Compact  # noqa: E402
from spandrel.architectures.ESRGAN import ESRGAN  # noqa: E402
from spandrel.architectures.NAFNet import NAFNet  # noqa: E402
from spandrel.architectures.RetinexFormer import RetinexFormer  # noqa: E402
from spandrel.architectures.SCUNet import SCUNet  # noqa: E402
from spandrel.architectures.SwinIR import SwinIR  # noqa: E402


SMALL = {  # family -> (a small random instance, scale)
    "Compact": (lambda: Compact(num_feat=16, num_conv=4, upscale=2), 2),
    "ESRGAN": (lambda: ESRGAN(num_filters=8, num_blocks=1, scale=2), 2),
    "SwinIR": (lambda: SwinIR(upscale=2, img_size=32, window_size=8, embed_dim=24, depths=[2], num_heads=[2],
                              mlp_ratio=2, upsampler="pixelshuffledirect"), 2),
    "NAFNet": (lambda: NAFNet(width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1]), 1),
    "RetinexFormer": (lambda: RetinexFormer(n_feat=8, stage=1, num_blocks=[1, 1, 1]), 1),
}


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def test_every_allowed_family_is_tested_and_has_a_licence():
    assert set(SMALL) == set(FAMILIES)
    assert all(f.licence and f.upstream for f in FAMILIES.values())


def checkpoint(family: str, path, dtype=torch.float32):
    torch.manual_seed(0)
    net = SMALL[family][0]().eval()
    save_file({k: v.to(dtype).contiguous() for k, v in net.state_dict().items()}, path)
    return net


@pytest.mark.parametrize("family", list(SMALL))
def test_a_family_loads_from_a_file_and_the_hub_and_is_defended_bit_for_bit(monkeypatch, tmp_path, family):
    net = checkpoint(family, tmp_path / "weights.safetensors")
    local = load_teacher(tmp_path / "weights.safetensors")
    with serving(monkeypatch, {"someone/model": {"weights.safetensors": (tmp_path / "weights.safetensors").read_bytes(),
                                                 "README.md": b"# a card"}}):
        remote = load_teacher("someone/model")  # the only .safetensors file of a repo without config.json
    for loaded in (local, remote):
        assert loaded.family == FAMILIES[family]
        assert loaded.scale == SMALL[family][1] and loaded.params == sum(p.numel() for p in net.parameters())
    assert remote.card == "# a card" and "someone/model" in remote.origin
    model = local.model
    layers = hookable_layers(model, sessions.probe(local))
    names = [f.name for f in layers]
    gates = [n for n, m in model.named_modules()
             if isinstance(m, (torch.nn.Softmax, torch.nn.AdaptiveAvgPool2d)) or n.endswith(".sca")]
    assert names and not set(gates) & set(names)  # attention scores and channel gates are no feature maps
    if family in ("SwinIR", "NAFNet"):
        assert gates
    hook, early = sessions.hook_layer(layers, local.default_layer), sessions.hook_layer(layers, local.early_layer)
    assert hook in names and hook != names[-1]  # the end of the body, not the output
    assert re.fullmatch(local.early_layer, early) and names.index(early) < names.index(hook)  # the sweep's two hooks
    x = torch.rand(1, 3, 21, 35, generator=torch.Generator().manual_seed(1))  # fits no size rule
    with torch.no_grad():
        clean = model(x)
        assert clean.shape == (1, 3, 21 * loaded.scale, 35 * loaded.scale)
        with defend(model, Setting(k=2, a=1.0, layers=(hook,))):
            assert torch.equal(model(x), clean)
        with defend(model, Setting(k=2, a=3.0, layers=(hook,))):
            assert not torch.equal(model(x), clean)
    assert torch.equal(remote.model(x), clean)


@pytest.mark.parametrize("window", [7, 12, 16])
def test_a_window_the_size_rule_does_not_state_still_shows_the_body(tmp_path, window):
    """SwinIR pads inside its forward to its window: at the first probe's 24 x 40 every map of a window
    other than 8 is the padded image's, so the body shows only at a probe of the window's multiple."""
    torch.manual_seed(0)
    net = SwinIR(upscale=2, img_size=6 * window, window_size=window, embed_dim=24, depths=[2, 2], num_heads=[2, 2],
                 mlp_ratio=2, upsampler="pixelshuffledirect")
    save_file(net.state_dict(), tmp_path / f"window{window}.safetensors")
    first = sessions.probe(load_teacher(tmp_path / f"window{window}.safetensors"))
    assert not hookable_layers(net, first)  # what a fixed probe found: nothing, not even the output
    assert hidden_multiple(net, first) == window
    teacher = sessions.session_teacher("sr_x2", tmp_path / f"window{window}.safetensors", budget=None)
    assert teacher.stages == ["net.layers.0.conv", "net.layers.1.conv", "net.conv_after_body"]
    assert teacher.default_layer == "net.conv_after_body" and teacher.early_layer == "net.layers.0.conv"


class PadsByFive(torch.nn.Module):
    """A network that pads by a fixed margin, which no multiple explains: its maps never follow the input."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Conv2d(3, 3, 3)

    def forward(self, x):
        return self.body(torch.nn.functional.pad(x, (6, 6, 6, 6)))[..., 5:-5, 5:-5]


def test_a_body_no_probe_shows_is_refused_not_reduced_to_the_output(tmp_path):
    checkpoint("NAFNet", tmp_path / "weights.safetensors")
    loaded = load_teacher(tmp_path / "weights.safetensors")
    loaded.model = PadsByFive()
    assert hidden_multiple(loaded.model, sessions.probe(loaded)) == 1
    with pytest.raises(TeacherLoadError, match="shows none of its body stages"):
        sessions.body_layers(loaded, torch.device("cpu"))


def test_half_precision_checkpoints_load_as_float32(tmp_path):
    checkpoint("Compact", tmp_path / "half.safetensors", torch.float16)
    loaded = load_teacher(tmp_path / "half.safetensors")
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())


def raw_safetensors(path, header: dict, data: bytes = b""):
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


@pytest.fixture
def never_read(monkeypatch):
    monkeypatch.setattr("app.teachers.checkpoint.load_file", lambda *a, **k: pytest.fail("weights were read"))


def test_a_header_that_claims_a_huge_tensor_is_refused_unread(tmp_path, never_read):
    path = raw_safetensors(tmp_path / "huge.safetensors",
                           {"w": {"dtype": "F32", "shape": [100_000, 100_000], "data_offsets": [0, 4]}}, b"\0" * 4)
    with pytest.raises(TeacherLoadError, match=r"hold 10,000,000,000 parameters; the limit is"):
        load_teacher(path)


def test_integer_tensors_are_refused_unread(tmp_path, never_read):
    path = raw_safetensors(tmp_path / "int8.safetensors",
                           {"w": {"dtype": "I8", "shape": [4], "data_offsets": [0, 4]}}, b"\0" * 4)
    with pytest.raises(TeacherLoadError, match="hold I8 tensors; a restoration teacher is stored as F32, F16, BF16"):
        load_teacher(path)
    index = raw_safetensors(tmp_path / "index.safetensors",  # ints only as a window transformer's index table
                            {"w.relative_position_index": {"dtype": "I8", "shape": [4], "data_offsets": [0, 4]}},
                            b"\0" * 4)
    with pytest.raises(TeacherLoadError, match="hold I8 tensors"):
        load_teacher(index)


@pytest.mark.parametrize("data,message", [
    (b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage", "not a safetensors file"),
    (b"\xff" * 8 + b"{}", "not a safetensors file"),
    (b"", "not a safetensors file"),
])
def test_files_that_are_not_safetensors(tmp_path, data, message):
    (tmp_path / "bad.safetensors").write_bytes(data)
    with pytest.raises(TeacherLoadError, match=message):
        load_teacher(tmp_path / "bad.safetensors")


def test_shapes_that_match_no_family(tmp_path):
    save_file({"encoder.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "odd.safetensors")
    with pytest.raises(TeacherLoadError, match="match no architecture the lab knows \\(allowed: .*SwinIR"):
        load_teacher(tmp_path / "odd.safetensors")


def test_a_one_channel_model_is_refused(tmp_path):
    torch.manual_seed(0)
    save_file(Compact(num_in_ch=1, num_out_ch=1, num_feat=8, num_conv=2, upscale=2).state_dict(),
              tmp_path / "grey.safetensors")
    with pytest.raises(TeacherLoadError, match="maps 1 to 1 channels; the lab restores RGB images"):
        load_teacher(tmp_path / "grey.safetensors")


def test_a_family_without_a_permissive_licence_is_named_and_refused(tmp_path):
    torch.manual_seed(0)
    net = SCUNet(in_nc=3, config=[1, 1, 1, 1, 1, 1, 1], dim=16)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "scunet.safetensors")
    with pytest.raises(TeacherLoadError, match="are a SCUNet network, which the lab does not load: its upstream "
                                               "repository states no licence. Allowed: "):
        load_teacher(tmp_path / "scunet.safetensors")


def test_repos_with_several_checkpoints_or_none_say_what_is_there(monkeypatch, tmp_path):
    checkpoint("Compact", tmp_path / "a.safetensors")
    weights = (tmp_path / "a.safetensors").read_bytes()
    repos = {"someone/several": {"x2.safetensors": weights, "x4.safetensors": weights},
             "someone/empty": {"notes.txt": b"hi"}}
    with serving(monkeypatch, repos):
        with pytest.raises(TeacherLoadError, match=r"several checkpoints \(x2.safetensors, x4.safetensors\): name one"):
            load_teacher("someone/several")
        with pytest.raises(TeacherLoadError, match=r"no checkpoint \(.safetensors, .pth, .pt, .ckpt\) and no "
                                                   r"config.json \(it holds notes.txt\)"):
            load_teacher("someone/empty")
        assert load_teacher("someone/several/x4.safetensors").family == FAMILIES["Compact"]
        assert load_teacher("someone/several@main/x2.safetensors").scale == 2


