"""The informed stage: the attackers who know the defense (app.attack.INFORMED: ASVP-aware un-amplification,
affinity matching) at every exposed setting whose student drop the search found beyond the noise floor, and
at every in-line setting on a confirmed frontier, with the first three seeds. Its rows live in
informed_<teacher>.csv under a fingerprint of their own (app.study.recipe), so the searched attackers' rows
stay current when these change, and the other way round. It reads the finished search's rows, so it runs after
it (app.study.runner).
"""
from __future__ import annotations

import pandas as pd

from app.attack.attackers import INFORMED, attacker
from app.defense.setting import Setting
from app.study.engine import Store
from app.study.findings import best, confirmed, summarise
from app.study.grid import frontier
from app.study.protocol import Row
from app.study.stages import Search
from app.study.timing import left_to_train


KIND = "informed"
ATTACKERS = tuple(INFORMED)
SEEDS = 3  # a finding needs its spread; three seeds keep the stage to a fraction of the search


def store(out) -> Store:
    return Store(out, KIND, ATTACKERS)


def targets(s: pd.DataFrame) -> list[Setting]:
    """One teacher's settings worth an informed attacker, from its search's summary `s`: exposed ones whose drop
    is beyond the noise floor (under any attacker, at the sweep's budget), then in-line ones on a confirmed
    frontier of any attacker."""
    s = s[(s.defense == "asvp") & (s.stage != "budget")]
    exposed = s[(s.placement == "exposed") & s.beyond_floor & (s.s_dpsnr < 0)]
    sure = confirmed(s[(s.stage == "screen") & (s.placement == "inline")])
    edges = [frontier(grp) for _, grp in sure.groupby("attacker", sort=False)]
    inline = pd.concat(edges) if edges else sure
    return list(dict.fromkeys(Setting.from_row(r) for r in pd.concat([exposed, inline]).itertuples()))


def picked(s: pd.DataFrame) -> set[Setting]:
    """The answer table's picks (app.study.findings.best at a negligible teacher cost), measured first."""
    return {Setting.from_row(r) for r in best(s, cheap=True).itertuples()}


def informed_rows(search: Search, s: pd.DataFrame) -> list[Row]:
    """Every informed attacker (on the task's own student, budget and queries) at every target setting of the
    search's summary `s`."""
    return [search.row(KIND, setting, attacker(search.attack, name))
            for setting in targets(s) for name in ATTACKERS]


def wanted(plans: list[Search], sweeps: Store) -> tuple[list[Row], list[Row]]:
    """The informed rows of every teacher whose search has rows on file: (those at the answer table's picks,
    the rest), so that a stop leaves the answer table's column filled first."""
    first, rest = [], []
    for s in plans:
        if sweeps.rows.get(s.source):
            summary = summarise(pd.DataFrame(sweeps.rows[s.source]))
            picks = picked(summary)
            for row in informed_rows(s, summary):
                (first if row.defense in picks else rest).append(row)
    return first, rest


def missing(plans: list[Search], seeds: list[int], sweeps: Store, informed: Store) -> tuple[str, str]:
    """The informed student pairs not on file yet and the time they take here (app.study.timing), at the answer
    table's picks and elsewhere ('' where none)."""
    return tuple(left_to_train(rows, seeds[:SEEDS], informed, "informed") for rows in wanted(plans, sweeps))
