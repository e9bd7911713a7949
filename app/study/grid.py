"""What the definitive search measures, per teacher: its grid, the settings that get students, and
the Pareto frontier that decides which points are confirmed with more seeds (the attackers are
named in app.attack.attackers).

The grid's teacher costs need no student, so every in-line setting is costed first (one teacher pass
over the scoring pairs each); students go only where they can tell something: per hooked stage,
layout and k, the strongest setting the teacher can afford (negligible cost), plus a costly anchor
or two per stage that draws the frontier's far end. Exposed settings cost the teacher nothing, so
they are screened at the strongest factor. app.study.stages runs the stages; app.study.protocol measures.
"""
from __future__ import annotations

import pandas as pd

from app.defense.setting import Setting
from app.study.protocol import teacher_score
from app.study.thresholds import negligible


A_GRID = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0)  # the factor, on a log grid up to 100
K_GRID = ((1, None), (2, None), (4, None), (8, None), (64, 0.9))  # (k, tau): adaptive k holds 90 % of the energy
LAYOUTS = ("channel", "spatial")
SCREEN_K = ((1, None), (4, None), (64, 0.9))  # the k's whose strongest affordable setting gets students
ANCHOR_A = (10.0, 100.0)  # costly in-line settings per stage (channel, k = 1): the frontier's far end
EXPOSED_A = 100.0  # exposed features cost the teacher nothing: screened at the strongest factor
CONFIRM_SEEDS = 5  # seeds for every point on (or near) a frontier

EXPOSED_SCREEN_ATTACKER = "feature L1 x1"  # reads the exposed features with a weight that matters


def grid(stages: list[str], quick: bool = False) -> list[Setting]:
    """Every in-line ASVP setting of the search at one teacher's stages (quick: a corner of it)."""
    layouts, ks, factors = (LAYOUTS[:1], K_GRID[:1], (2.0, 100.0)) if quick else (LAYOUTS, K_GRID, A_GRID)
    return [Setting(layers=(layer,), layout=layout, k=k, tau=tau, a=a)
            for layer in stages for layout in layouts for k, tau in ks for a in factors]


def teacher_costs(teacher, task, settings: list[Setting], pairs) -> pd.DataFrame:
    """The teacher's PSNR/SSIM change for every setting (no student needed: one teacher pass each)."""
    rows, clean = [], teacher_score(teacher, settings[0].clean, pairs, task)
    for defense in settings:
        scored = teacher_score(teacher, defense, pairs, task)
        rows.append(dict({c: defense.row()[c] for c in ("layer", "layout", "k", "tau", "a")},
                         t_dpsnr=scored["psnr"] - clean["psnr"], t_dssim=scored["ssim"] - clean["ssim"]))
    return pd.DataFrame(rows)


def screened_inline(costs: pd.DataFrame) -> list[Setting]:
    """Per stage, layout and screened k: the strongest affordable factor; plus the costly anchors."""
    out = []
    cheap = costs[negligible(costs.t_dpsnr, costs.t_dssim) & (costs.a > 1)]
    for (layer, layout, k), grp in cheap.groupby(["layer", "layout", "k"], sort=False):
        strongest = Setting.from_row(grp.loc[grp.a.idxmax()])
        if (strongest.k, strongest.tau) in SCREEN_K:
            out.append(strongest)
    anchors = [Setting(layers=(layer,), k=1, a=a) for layer in dict.fromkeys(costs.layer) for a in ANCHOR_A]
    return list(dict.fromkeys(out + anchors))


def screened_exposed(stages: list[str]) -> list[Setting]:
    return [Setting(layers=(layer,), layout=layout, k=k, tau=tau, a=EXPOSED_A, placement="exposed")
            for layer in stages for layout in LAYOUTS for k, tau in SCREEN_K]


def frontier(summary: pd.DataFrame) -> pd.DataFrame:
    """The Pareto frontier of (teacher cost, student drop): the settings no other beats on both
    (a smaller teacher loss and a larger student drop), cheapest first."""
    ordered = summary.sort_values(["t_dpsnr", "s_dpsnr"], ascending=[False, True])
    best, keep = float("inf"), []
    for i, r in ordered.iterrows():
        if r.s_dpsnr < best:
            keep.append(i)
            best = r.s_dpsnr
    return ordered.loc[keep]


