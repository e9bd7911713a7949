"""Teacher training resumes: a run killed after a save and started again ends with the very weights
of a run that was never interrupted."""
import pytest
import torch
from safetensors.torch import load_file

from app.teachers import train as train_module
from app.teachers.train import RESUME, Recipe, train


RECIPE = Recipe(task="sr_x2", arch="compact", steps=4, batch=2, patch=16, variants=1)


def _killed_after_first_save(out, monkeypatch):
    """Run RECIPE into `out` and stop it the way Ctrl-C would, right after its first save."""
    save = train_module._save_state

    def save_then_die(*args):
        save(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(RECIPE, out, save_every=2)
    monkeypatch.setattr(train_module, "_save_state", save)
    assert (out / RESUME).exists()


def test_a_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    train(RECIPE, tmp_path / "whole", save_every=2)
    _killed_after_first_save(tmp_path / "killed", monkeypatch)
    train(RECIPE, tmp_path / "killed", save_every=2)

    assert not (tmp_path / "killed" / RESUME).exists()
    assert "resumed after step 2" in (tmp_path / "killed" / "train.log").read_text()
    whole, resumed = (load_file(tmp_path / d / "model.safetensors") for d in ("whole", "killed"))
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_a_different_recipe_starts_afresh(tmp_path, monkeypatch):
    _killed_after_first_save(tmp_path, monkeypatch)
    other = Recipe(**{**RECIPE.__dict__, "seed": 1})
    train(other, tmp_path, save_every=2)
    log = (tmp_path / "train.log").read_text()
    assert "resumed" not in log and log.startswith('{"task": "sr_x2"') and '"seed": 1' in log
