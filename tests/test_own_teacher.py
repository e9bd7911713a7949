"""The search on a researcher's own teacher, headless: a local .pth or a Hub source, into its own folder,
resumable; their own pairs checked with clear messages; the same cost budget as the app, raised by a flag.
Everything a researcher can get wrong stops the command with one line that says what."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT
from hubserver import serving
from huggingface_hub import constants
from PIL import Image
from safetensors.torch import save_file

from app.data.benchmarks import PairsError, folder_pairs, pairs_checksum
from app.data.images import to_uint8
from app.data.sources import held_out_image
from app.data.tasks import TASKS
from app.study.cli import main, teacher_source
from app.study.protocol import Pairs
from app.teachers.families import import_spandrel
from app.teachers.registry import file_stem


import_spandrel()
from spandrel.architectures.Compact import Compact  # noqa: E402
from spandrel.architectures.SwinIR import SwinIR  # noqa: E402


def compact_x2_pth(path: Path) -> Path:
    torch.manual_seed(0)
    torch.save({"params_ema": Compact(num_feat=16, num_conv=4, upscale=2).eval().state_dict()}, path)
    return path


def write_pairs(folder: Path, task: str = "sr_x2", names=("chelsea", "coffee")) -> Path:
    """Pairs made by the task's own degradation from permissively licensed images."""
    for sub in ("input", "target"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        degraded, clean = TASKS[task].make_pair(held_out_image(name)[:96, :128], i)
        Image.fromarray(to_uint8(degraded)).save(folder / "input" / f"{name}.png")
        Image.fromarray(to_uint8(clean)).save(folder / "target" / f"{name}.png")
    return folder


def refused(capsys, argv) -> str:
    with pytest.raises(SystemExit):
        main(argv)
    return capsys.readouterr().err


@pytest.mark.slow
def test_a_local_pth_is_searched_into_its_own_folder_on_the_researchers_pairs_and_resumes(tmp_path):
    teacher = compact_x2_pth(tmp_path / "compact_x2.pth")
    pairs, out = write_pairs(tmp_path / "pairs"), tmp_path / "out"
    argv = ["--teacher", str(teacher), "--task", "sr_x2", "--quick", "--budget", "5", "--seeds", "0", "1",
            "--pairs", str(pairs), "--out", str(out)]
    run = subprocess.run([sys.executable, "-m", "app.experiments", *argv], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "local file compact_x2.pth: Real-ESRGAN Compact (SRVGGNet), 11,548 parameters, x2" in run.stdout
    assert "scoring on 2 pair(s)" in run.stdout
    assert {"sweep_compact_x2.csv", "costs_compact_x2.csv", "tradeoff_compact_x2.png", "budget_compact_x2.png",
            "RESULTS.md", "summary.csv", "defaults.json"} <= {p.name for p in out.iterdir()}
    report = (out / "RESULTS.md").read_text()
    for threat in ("in-line, output KD", "exposed, feature KD"):
        assert f"| sr_x2 | Real-ESRGAN Compact (SRVGGNet) | {threat} |" in report
    assert "![trade-off](tradeoff_compact_x2.png)" in report
    again = subprocess.run([sys.executable, "-m", "app.experiments", "--plan", *argv], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "no committed row needs retraining" in again.stdout  # resumable: every row is found under its key


def test_a_hub_teacher_is_planned_from_the_hub_and_its_costs_stored(tmp_path, monkeypatch, capsys):
    """The plan loads the teacher through huggingface_hub, and Ray's workers read it from the same cache."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))  # for the workers: they read the cache, offline
    data = compact_x2_pth(tmp_path / "model.pth").read_bytes()
    with serving(monkeypatch, {"someone/compact-x2": {"model.pth": data}}):
        main(["--plan", "--quick", "--budget", "5", "--seeds", "0", "--teacher", "someone/compact-x2", "--task",
              "sr_x2", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "Hub repo someone/compact-x2 @ " in out and "Real-ESRGAN Compact (SRVGGNet), 11,548 parameters" in out
    pinned = "someone/compact-x2@0123456789abcdef0123456789abcdef01234567/model.pth"  # the commit the Hub served
    assert re.search(f"^{pinned}: \\d+ screen students of 5 steps", out, re.M)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["costs_someone_compact-x2_model.csv"]


def test_an_unreachable_hub_teacher_is_refused_rather_than_replaced(capsys):
    err = refused(capsys, ["--plan", "--teacher", "someone/asvp-sr_x2", "--task", "sr_x2"])
    assert "replaced by the bundled sr_x2 teacher" in err and "measures only the teacher it was asked for" in err


def test_a_teacher_over_the_cost_budget_is_refused_unless_the_flag_raises_it(tmp_path, capsys):
    torch.manual_seed(0)
    net = SwinIR(upscale=2, img_size=64, window_size=32, embed_dim=16, depths=[1], num_heads=[8], mlp_ratio=1,
                 upsampler="pixelshuffledirect")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "x2.safetensors")
    err = refused(capsys, ["--plan", "--teacher", str(tmp_path / "x2.safetensors"), "--task", "sr_x2"])
    assert "is over the lab's cost budget" in err and "the limit is 1.5 GB" in err
    err = refused(capsys, ["--plan", "--teacher", str(tmp_path / "x2.safetensors"), "--task", "sr_x2",
                           "--max-gb", "0.001"])
    assert "the limit is 0.001 GB" in err  # the flag sets the limit the teacher is measured against


@pytest.mark.parametrize("argv,message", [
    (["--teacher", "dehaze"], "name its --task"),
    (["--teacher", "dehaze", "--task", "dehaze", "--teachers", "dehaze"], "and no --teachers"),
    (["--teacher", "nobody/none", "--task", "dehaze"], "cannot search nobody/none: the Hub is unreachable"),
    (["--tasks", "dehaze", "sr_x2", "--pairs", "."], "--pairs scores one task"),
])
def test_arguments_that_do_not_fit_stop_with_what_to_change(capsys, argv, message):
    assert message in refused(capsys, ["--plan", "--quick", *argv])


def test_a_local_file_that_is_no_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not weights")
    (tmp_path / "broken.pth").write_bytes(b"\x80\x04not a pickle")
    assert "is not a checkpoint" in refused(capsys, ["--plan", "--teacher", str(tmp_path / "notes.txt"),
                                                     "--task", "sr_x2"])
    err = refused(capsys, ["--plan", "--teacher", str(tmp_path / "broken.pth"), "--task", "sr_x2"])
    assert f"cannot search {tmp_path / 'broken.pth'}: " in err and len(err.strip().splitlines()[-1]) < 700


def bad_pairs(tmp_path: Path, case: str) -> Path:
    folder = write_pairs(tmp_path / "pairs")
    if case == "no target":
        for p in (folder / "target").iterdir():
            p.unlink()
        (folder / "target").rmdir()
    elif case == "missing partner":
        (folder / "target" / "coffee.png").unlink()
    elif case == "unreadable":
        (folder / "input" / "coffee.png").write_bytes(b"not an image")
    elif case == "wrong scale":
        Image.fromarray(np.zeros((96, 96, 3), np.uint8)).save(folder / "target" / "coffee.png")
    elif case == "too small":
        for sub, side in (("input", 4), ("target", 8)):
            Image.fromarray(np.zeros((side, side, 3), np.uint8)).save(folder / sub / "coffee.png")
    elif case == "empty":
        for p in [*(folder / "input").iterdir(), *(folder / "target").iterdir()]:
            p.unlink()
    return folder


@pytest.mark.parametrize("case,message", [
    ("no target", "needs input/ and target/ folders of matching file names; it has no target/"),
    ("missing partner", "1 file(s) of input/ have no partner of the same name in target/: coffee.png"),
    ("unreadable", "input/coffee.png is not an image this lab can read"),
    ("wrong scale", "target/coffee.png is 96 x 96 px but its input is 64 x 48: the task upscales x2, so the target "
                    "must be 128 x 96"),
    ("too small", "input/coffee.png is 4 x 4 px: too small to score"),
    ("empty", "hold no files"),
])
def test_bad_pairs_stop_the_search_with_what_is_wrong(tmp_path, capsys, case, message):
    folder = bad_pairs(tmp_path, case)
    with pytest.raises(PairsError, match=re.escape(message)):
        folder_pairs(folder, 2)
    err = refused(capsys, ["--plan", "--quick", "--tasks", "sr_x2", "--teachers", "sr_x2", "--pairs", str(folder)])
    assert "--pairs: " in err and message in err


def test_pairs_are_keyed_by_their_contents_and_the_benchmark_keeps_the_stored_keys(tmp_path):
    assert Pairs(n=4, crop=192).key() == {"n": 4, "crop": 192}  # the committed rows' keys hold exactly this
    folder = write_pairs(tmp_path / "pairs")
    first = Pairs(n=2, crop=128, folder=str(folder)).key()
    moved = write_pairs(tmp_path / "elsewhere")
    assert Pairs(n=2, crop=128, folder=str(moved)).key() == first  # the same pairs in another place
    pairs_checksum.cache_clear()
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(moved / "input" / "coffee.png")
    assert Pairs(n=2, crop=128, folder=str(moved)).key() != first


def test_a_teachers_files_get_a_name_a_folder_can_hold():
    assert file_stem("sr_x2-swinir") == "sr_x2-swinir"
    assert file_stem(Path("/home/me/models/My Model.pth")) == "My_Model"
    assert file_stem("/home/me/models/x2.safetensors") == "x2"  # the path as a report's teacher column has it
    assert file_stem("owner/name@v1.0/weights/x2.pth") == "owner_name_weights_x2"
    assert teacher_source("sr_x2-swinir") == "sr_x2-swinir" and teacher_source("owner/name") == "owner/name"
    assert teacher_source(str(ROOT / "README.md")) == ROOT / "README.md"
