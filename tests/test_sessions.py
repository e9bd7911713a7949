"""Sessions share one loaded copy of a teacher: eight visitors loading the same checkpoint cost one
load and one set of weights (their hooks take turns on it: tests/test_app.py's overlap tests), and a
teacher a visitor brought is freed once no session holds it."""
import gc
import weakref

import torch

from app.teachers import sessions
from app.teachers.families import import_spandrel
from app.teachers.loader import load_teacher


import_spandrel()
from spandrel.architectures.Compact import Compact  # noqa: E402


def test_eight_sessions_of_one_checkpoint_load_it_once_and_share_its_module(tmp_path, monkeypatch):
    torch.manual_seed(0)
    torch.save(Compact(num_feat=16, num_conv=4, upscale=2).state_dict(), tmp_path / "x2.pth")
    loads = []
    monkeypatch.setattr(sessions, "load_teacher", lambda source: loads.append(source) or load_teacher(tmp_path / "x2.pth"))
    taught = [sessions.session_teacher("sr_x2", "someone/shared-x2") for _ in range(8)]
    assert loads == ["someone/shared-x2"] and len({id(s.model) for s in taught}) == 1
    assert taught[0].loaded.cost is not None  # measured once, before the first session was served


def test_a_visitors_teacher_is_freed_when_the_last_session_holding_it_ends(tmp_path, monkeypatch):
    torch.manual_seed(0)
    torch.save(Compact(num_feat=16, num_conv=4, upscale=2).state_dict(), tmp_path / "x2.pth")
    monkeypatch.setattr(sessions, "load_teacher", lambda source: load_teacher(tmp_path / "x2.pth"))
    first, second = (sessions.session_teacher("sr_x2", "someone/freed-x2") for _ in range(2))
    module = weakref.ref(first.model)
    del first
    gc.collect()
    assert module() is second.model  # another session still holds it
    del second  # the last session ends (Gradio deletes its state) or loads another teacher
    gc.collect()
    assert module() is None
    again = sessions.session_teacher("sr_x2", "someone/freed-x2")
    assert again.loaded.cost is not None  # loaded and measured afresh for the next visitor


def test_the_bundled_teachers_are_shared_too():
    assert sessions.session_teacher("dehaze").model is sessions.session_teacher("dehaze", "dehaze").model
