"""Settings that reach the Lab from outside its controls: a shared link, an explorer point, a tour button."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import gradio as gr
import pandas as pd

from app.attack import attackers
from app.data.tasks import get_task
from app.defense.setting import Setting
from app.study.findings import entry
from app.ui.inputs import MAX_BUDGET, MAX_K


RESULTS = Path(__file__).resolve().parents[2] / "results"


# the explorer's table, in words (summary.csv's column -> what it means)
COLUMNS = {"task": "task", "teacher_family": "family", "stage": "stage", "attacker": "attacker",
           "layer": "hooked layer", "layout": "layout", "k": "k", "a": "a", "tau": "tau", "placement": "placement",
           "seeds": "seeds", "t_dpsnr": "teacher ΔPSNR (dB)", "t_dssim": "teacher ΔSSIM",
           "s_dpsnr": "student ΔPSNR (dB)", "s_dpsnr_std": "student spread (dB)",
           "ssim_drop_pct": "student SSIM drop (%)", "noise_floor": "noise floor (dB)",
           "bound_db": "output-KD bound (dB)", "informed_dpsnr": "strongest informed attacker's student ΔPSNR (dB)",
           "field_dpsnr": "field student's ΔPSNR, long budget (dB)"}


def measured() -> pd.DataFrame:
    """The search's ASVP settings (results/summary.csv, one line each), empty before any search."""
    path = RESULTS / "summary.csv"
    s = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=[*COLUMNS, "defense", "threat", "teacher"])
    return s[s.defense == "asvp"]


def setting_link(settings: dict) -> str:
    """A relative link that opens the app on a Distill click's setting (its query: setting_from_link)."""
    query = dict(task=settings["task"], teacher=settings["teacher"], **Setting(**settings["defense"]).query(),
                 attacker=settings["attacker"], budget=settings["budget"], seed=settings["seed"])
    return "?" + urlencode(query)


def setting_from_link(query: dict) -> dict | None:
    """The setting a shared link asks for (None: a plain visit), checked as the controls would be."""
    if "task" not in query:
        return None
    try:
        task = get_task(query["task"]).name
        defense = Setting.from_query(query)
        attacker = query.get("attacker", attackers.own_attacker(task))
        attackers.attacker(attackers.attack_for(task), attacker)
        budget, seed = int(query.get("budget", attackers.attack_for(task).steps)), int(query.get("seed", 0))
    except (KeyError, ValueError) as e:
        raise gr.Error(f"This link's setting is unusable ({type(e).__name__}: {e}); the app starts as usual.") from None
    except gr.Error as e:
        raise gr.Error(f"This link's setting is unusable ({e.message}); the app starts as usual.") from None
    if defense.k > MAX_K:
        raise gr.Error(f"This link's k={defense.k} is above the Lab's {MAX_K}; the app starts as usual.")
    if not 10 <= budget <= MAX_BUDGET:
        raise gr.Error(f"This link's student budget {budget} is outside 10..{MAX_BUDGET} steps.")
    return dict(task=task, teacher=query.get("teacher", task), attacker=attacker, budget=budget, seed=seed,
                defense=defense.entry())


def point_setting(point: str) -> dict:
    """A measured setting by its id (a summary line; anything after the id is ignored), as the Lab
    loads it: task, teacher and entry."""
    s = measured()
    try:
        r = s.loc[int(str(point).split()[0])]
    except (ValueError, KeyError, IndexError):
        raise gr.Error(f"No measured setting {point!r}: pick a point of the explorer.") from None
    return dict(task=r.task, teacher=r.teacher, **entry(r))
