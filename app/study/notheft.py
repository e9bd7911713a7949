"""The no-theft stage: per teacher, the student that steals nothing (app.attack.distill.no_theft) with
the task's own attacker at the sweep's budget and every seed, in notheft_<teacher>.csv beside its sweep.
What theft is worth is the clean-taught student's gain over it; a defense protects something only where
it pushes the defended-taught student below it."""
from __future__ import annotations

from app.study.engine import Store, Workers, no_theft_key, streamed
from app.study.protocol import no_theft_scores
from app.study.stages import Search


KIND = "notheft"


def wanted(plans: list[Search], seeds: list[int]) -> list[tuple[Search, int, str]]:
    """Every teacher's no-theft rows: (search, seed, key)."""
    return [(s, seed, no_theft_key(s.task, s.source, s.attack, s.pairs, seed)) for s in plans for seed in seeds]


def missing(plans: list[Search], seeds: list[int], store: Store) -> int:
    """How many no-theft students are not on file yet."""
    return sum(key not in store.done(s.source) for s, _, key in wanted(plans, seeds))


def run_no_theft(ray, plans: list[Search], seeds: list[int], store: Store, workers: Workers) -> None:
    """Train the missing no-theft students as Ray tasks, streaming their rows into the store."""
    remote, pending = workers.remote(ray, no_theft_scores), {}
    for s, seed, key in wanted(plans, seeds):
        if key not in store.done(s.source):
            pending[remote.remote(s.task, s.source, s.pairs, s.attack, seed)] = (s, key)
    for (s, key), row in streamed(ray, pending, "no-theft", "student"):
        store.add(s.source, [dict(row, key=key, **store.stamp(s.task, s.source))])
