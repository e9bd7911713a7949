"""The search's stages, as rows: per bundled teacher (our U-Net and each field family), a screen with
the first seed (the strongest affordable in-line setting per stage, layout and k from the teacher
costs, costly anchors, and exposed settings under a feature-reading attacker); every point on a
frontier of (teacher cost, student drop) confirmed with every seed; the best in-line and the best
exposed setting under every attacker, next to the baselines at the same served-output distortion;
and a budget curve (150, 600, 2400 steps) with the first three seeds. Which rows come next depends on
the rows measured before, so `stages` walks them with a measuring function (a run's or a plan's).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from app.attack.attackers import ATTACKERS, attack_for, attacker
from app.attack.distill import Attack
from app.defense.setting import Setting
from app.study.engine import row_key
from app.study.findings import summarise
from app.study.grid import EXPOSED_SCREEN_ATTACKER, frontier, screened_exposed, screened_inline
from app.study.protocol import Pairs, Row
from app.study.thresholds import negligible
from app.teachers.sessions import Source, session_teacher


BUDGETS = (150, 600, 2400)  # the budget curve: does the damage persist, or do students learn through it?
QUICK_ATTACKERS = ("output L1", "feature L1 x1", "FitNet MSE")
BASELINE_DIRECTIONS = ("random", "bottom")  # ASVP along other directions, at the best setting's cost


@dataclass
class Search:
    """One teacher's search: its session, attacker, stages and the rows of each stage as they come."""

    task: str
    source: Source
    attack: Attack  # the task's own attacker at the sweep's budget
    pairs: Pairs
    stages: list[str]
    quick: bool

    def row(self, stage: str, defense: Setting, attack: Attack, kind: str = "asvp") -> Row:
        return Row(self.task, self.source, stage, kind, defense, attack, self.pairs)

    def attackers(self) -> list[str]:
        return list(QUICK_ATTACKERS if self.quick else ATTACKERS)


def sweep_attack(task_name: str, budget: int | None, quick: bool) -> Attack:
    """The task's own attacker at the sweep's budget (None: the task's default); a quick one sends fewer and
    smaller queries (its students' steps and the teacher's passes are most of a quick run)."""
    own = attack_for(task_name)
    return dataclasses.replace(own, steps=budget or own.steps, **(dict(queries=16, patch=24) if quick else {}))


def sweep_pairs(quick: bool, folder: str = "", count: int = 0) -> Pairs:
    """The task's first benchmark pairs, or a researcher's `count` pairs in `folder` (all of them in a full run)."""
    pairs = Pairs(n=2, crop=128) if quick else Pairs()
    return dataclasses.replace(pairs, n=min(pairs.n, count) if quick else count, folder=folder) if folder else pairs


def searches(teachers: list[tuple[str, Source]], budget: int | None, quick: bool,
             pairs: Pairs | None = None) -> list[Search]:
    """One search per (task, teacher), scored on `pairs` (default: the task's benchmark)."""
    out = []
    for task, source in teachers:
        session = session_teacher(task, source, budget=None)  # the command line admitted it
        stages = [session.default_layer] if quick else session.stages
        out.append(Search(task, source, sweep_attack(task, budget, quick), pairs or sweep_pairs(quick),
                          stages, quick))
    return out


def screen_rows(search: Search, costs: pd.DataFrame) -> list[Row]:
    """Stage 1: the affordable-strongest in-line settings and anchors under the task's own output
    attacker, and the exposed settings under a feature-reading one."""
    feature = attacker(search.attack, EXPOSED_SCREEN_ATTACKER)
    exposed = screened_exposed(search.stages)
    if search.quick:
        exposed = exposed[:1]
    return ([search.row("screen", d, search.attack) for d in screened_inline(costs)]
            + [search.row("screen", d, feature) for d in exposed])


def confirm_rows(screen: list[Row], measured: list[dict]) -> list[Row]:
    """Every screened point on the Pareto frontier of its attacker (in-line and exposed alike)."""
    s = summarise(pd.DataFrame(measured))
    keep = set()
    for _, grp in s.groupby("attacker", sort=False):
        keep |= {(Setting.from_row(r), r.attacker)
                 for r in frontier(grp[grp.learned] if grp.learned.any() else grp).itertuples()}
    return [row for row in screen if (row.defense, row.attack.label) in keep]


def best_defenses(search: Search, measured: list[dict]) -> tuple[Setting, Setting]:
    """The confirmed in-line setting with the largest student drop at a negligible teacher cost
    (else the cheapest), and the exposed setting with the largest drop."""
    s = summarise(pd.DataFrame(measured))
    inline, exposed = s[s.placement == "inline"], s[s.placement == "exposed"]
    cheap = inline[negligible(inline.t_dpsnr, inline.t_dssim) & inline.learned]
    pick = cheap.loc[cheap.s_dpsnr.idxmin()] if not cheap.empty else inline.loc[inline.t_dpsnr.idxmax()]
    return Setting.from_row(pick), Setting.from_row(exposed.loc[exposed.s_dpsnr.idxmin()])


def attacker_rows(search: Search, inline: Setting, exposed: Setting) -> list[Row]:
    """The best in-line setting under every attacker, the best exposed one under every attacker that
    reads features (exposed features reach no output-only attacker: bit-identical students, tested),
    the exposed features of every stage at once, and the baselines at the in-line setting's cost."""
    rows = []
    for name in search.attackers():
        attack = attacker(search.attack, name)
        rows.append(search.row("attackers", inline, attack))
        if attack.reads_features:
            rows.append(search.row("attackers", exposed, attack))
    every_stage = dataclasses.replace(exposed, layers=tuple(search.stages))
    rows.append(search.row("attackers", every_stage, attacker(search.attack, EXPOSED_SCREEN_ATTACKER)))
    rows += [search.row("baselines", inline, search.attack, f"asvp-{d}") for d in BASELINE_DIRECTIONS]
    return rows + [search.row("baselines", inline, search.attack, "output-noise")]


def curve_rows(search: Search, inline: Setting, exposed: Setting, budgets: tuple[int, ...]) -> list[Row]:
    """The budget curve: the best in-line setting under the task's attacker and the adaptive one,
    the best exposed setting under feature KD, at every budget."""
    pairs = [(inline, search.attack), (inline, attacker(search.attack, "adaptive") if not search.quick
                                       else search.attack), (exposed, attacker(search.attack, EXPOSED_SCREEN_ATTACKER))]
    return [search.row("budget", d, dataclasses.replace(a, steps=b)) for d, a in dict.fromkeys(pairs) for b in budgets]


def stages(plans: list[Search], seeds: list[int], budgets: tuple[int, ...], grids: dict[str, pd.DataFrame],
           measured: Callable[[list[Row], list[int], str], list[dict] | None]) -> dict[str, list[str]] | None:
    """The search's stages in order: screen (first seed), frontier confirmed (every seed), attackers
    and baselines (every seed), budget curve (first three seeds). `measured(rows, seeds, stage)` gives
    the rows on file once the missing ones are measured (a run), or None where some are missing (a
    plan: the later stages follow from them, so the walk stops). Returns each teacher's row keys in
    the protocol's order, or None."""
    screens = {s.source: screen_rows(s, grids[s.source]) for s in plans}
    first = measured([r for rows in screens.values() for r in rows], seeds[:1], "screen")
    if first is None:
        return None
    confirms = {s.source: confirm_rows(screens[s.source], [r for r in first if r["teacher"] == str(s.source)])
                for s in plans}
    confirmed = measured([r for rows in confirms.values() for r in rows], seeds, "frontier")
    if confirmed is None:
        return None
    later = {}
    for s in plans:
        inline, exposed = best_defenses(s, [r for r in confirmed if r["teacher"] == str(s.source)])
        later[s.source] = (attacker_rows(s, inline, exposed), curve_rows(s, inline, exposed, budgets))
    if measured([r for rows, _ in later.values() for r in rows], seeds, "attackers and baselines") is None:
        return None
    if measured([r for _, rows in later.values() for r in rows], seeds[:3], "budget curve") is None:
        return None
    return {s.source: list(dict.fromkeys([row_key(row, seeds[0]) for row in screens[s.source]]
                                         + [row_key(row, seed) for row in confirms[s.source] for seed in seeds[1:]]
                                         + [row_key(row, seed) for row in later[s.source][0] for seed in seeds]
                                         + [row_key(row, seed) for row in later[s.source][1] for seed in seeds[:3]]))
            for s in plans}


def budgets_of(plans: list[Search], quick: bool) -> tuple[int, ...]:
    return tuple(sorted({s.attack.steps for s in plans} | {2 * s.attack.steps for s in plans})) if quick else BUDGETS
