"""Every command that trains or sweeps takes a device, and the app reads one from ASVP_DEVICE; asking
for CUDA where there is none falls back to the CPU and says so (tests themselves stay on the CPU)."""
import pytest
import torch

from app.devices import app_device, device_of, pick_device
from app.study import cli as experiments
from app.study.engine import Workers
from app.teachers import train


def test_cuda_asked_for_where_there_is_none_falls_back_with_a_note(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("cuda") == (torch.device("cpu"), "CUDA was asked for, but PyTorch sees no GPU here: "
                                                        "running on the CPU")
    assert pick_device("auto") == (torch.device("cpu"), "") and pick_device("cpu") == (torch.device("cpu"), "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == (torch.device("cuda"), "") and pick_device("cpu") == (torch.device("cpu"), "")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        pick_device("tpu")


@pytest.mark.parametrize("value,device,note", [
    (None, "cpu", ""), ("", "cpu", ""), (" CPU ", "cpu", ""), ("auto", "cpu", ""),
    ("cuda", "cpu", "CUDA was asked for, but PyTorch sees no GPU here: running on the CPU"),
    ("gpu", "cpu", "ASVP_DEVICE='gpu' is not one of auto, cpu, cuda: running on the CPU")])
def test_the_app_reads_its_device_from_the_environment_and_starts_whatever_it_says(monkeypatch, value, device, note):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if value is None:
        monkeypatch.delenv("ASVP_DEVICE", raising=False)
    else:
        monkeypatch.setenv("ASVP_DEVICE", value)
    assert app_device() == (torch.device(device), note)


def test_the_app_takes_cuda_by_default_where_there_is_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("ASVP_DEVICE", raising=False)
    assert app_device() == (torch.device("cuda"), "")
    monkeypatch.setenv("ASVP_DEVICE", "tpu")
    assert app_device() == (torch.device("cuda"), "ASVP_DEVICE='tpu' is not one of auto, cpu, cuda: running on CUDA")
    monkeypatch.setenv("ASVP_DEVICE", "cpu")
    assert app_device() == (torch.device("cpu"), "")


def test_a_sweep_with_cuda_and_no_gpu_says_it_runs_on_the_cpu(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):  # an empty folder has nothing to report, and says so
        experiments.main(["--device", "cuda", "--report-only", "--out", str(tmp_path), "--tasks"])
    said = capsys.readouterr()
    assert "PyTorch sees no GPU here: running on the CPU" in said.out and "nothing to report" in said.err


@pytest.mark.parametrize("cli", [train.main, experiments.main])
def test_training_commands_refuse_an_unknown_device(cli, capsys):
    with pytest.raises(SystemExit):
        cli(["--task", "dehaze", "--device", "tpu"] if cli is train.main else ["--device", "tpu"])
    assert "invalid choice: 'tpu'" in capsys.readouterr().err


def test_a_model_reports_where_it_lives():
    assert device_of(torch.nn.Conv2d(1, 1, 1)) == torch.device("cpu") and device_of(torch.nn.ReLU()).type == "cpu"


def test_sweep_tasks_share_a_gpu_and_take_a_core_each():
    """On CUDA each Ray task asks for 1/per_gpu of a GPU, so a GPU runs several quick students at once;
    on the CPU it asks for none."""
    assert Workers(device=torch.device("cuda"), per_gpu=4).resources() == dict(num_cpus=1, num_gpus=0.25)
    assert Workers(device=torch.device("cuda"), per_gpu=1).resources() == dict(num_cpus=1, num_gpus=1.0)
    assert Workers().resources() == dict(num_cpus=1, num_gpus=0)


@pytest.mark.parametrize("argv", [["--per-gpu", "0"], ["--threads", "0"]])
def test_a_sweep_refuses_workers_with_nothing_to_run_on(argv, capsys):
    with pytest.raises(SystemExit):
        experiments.main(["--quick", *argv])
    assert "threads and per_gpu must be >= 1" in capsys.readouterr().err
