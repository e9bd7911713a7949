"""One row's measurement: the teacher answers each seed's queries once under the row's defense, and the clean
answers every row's served change is measured against are asked once per seed, however many rows share them
(a heavy teacher's search is mostly its answers)."""
import dataclasses

import pytest
import torch

from app.attack.distill import Attack, asked, attacker_queries
from app.attack.features import teacher_features
from app.defense.bound import rms
from app.defense.setting import Setting
from app.study import protocol
from app.study.protocol import (Pairs, Row, clean_answers, clean_student_scores, measure, seed_answers, seed_served,
                                served_key, served_to, teacher_on)


pytestmark = pytest.mark.benchmarks  # rows are scored on the benchmark pairs
TINY = Attack(steps=3, queries=8, batch=2, patch=32)
CPU = torch.device("cpu")


def test_a_row_asks_once_a_seed_and_measures_the_served_change_against_the_shared_clean_answers():
    rows = [Row("dehaze", "dehaze", "screen", "asvp", Setting(layers=("dec1",), k=1, a=a), TINY, Pairs(n=1, crop=64))
            for a in (3.0, 10.0)]
    cleans = [clean_student_scores(rows[0], seed) for seed in (0, 1)]
    session, _, _ = teacher_on("dehaze", "dehaze", rows[0].pairs, torch.device("cpu"))
    clean_answers.cache_clear()
    protocol._served.clear()  # whatever earlier tests in this process kept
    batches = []  # the teacher's forwards on the attacker's queries (the scoring pairs go one image at a time)
    handle = session.model.register_forward_hook(lambda _m, _i, out: batches.append(out.shape[0]))
    try:
        measured = [measure(row, [0, 1], *cleans) for row in rows]
    finally:
        handle.remove()
    assert batches.count(TINY.queries) == 2 * 2 + 2  # per row and seed its served answers; per seed the clean ones
    for row, found in zip(rows, measured):
        for seed, record in zip((0, 1), found):
            served = asked(session.model, session.task, row.defense, TINY, seed).answers
            unmoved = asked(session.model, session.task, row.defense.clean, TINY, seed).answers
            assert record["served_rms"] == rms(served - unmoved) > 0
    assert measured[1][0]["served_rms"] > measured[0][0]["served_rms"]  # a stronger factor moves the answers more


def test_the_attackers_and_budgets_of_one_setting_share_its_teacher_pass_and_measure_what_they_measured_alone(
        monkeypatch):
    """The answers depend on the queries, not on the attacker: a worker asks once a setting and seed, and a row
    measured after others equals the same row measured first."""
    setting = Setting(layers=("dec1",), k=1, a=10.0)
    rows = [Row("dehaze", "dehaze", "attackers", "asvp", setting, attack, Pairs(n=1, crop=64))
            for attack in (TINY, dataclasses.replace(TINY, kind="feature"), dataclasses.replace(TINY, steps=5))]
    session, _, _ = teacher_on("dehaze", "dehaze", rows[0].pairs, CPU)
    alone = []
    for row in rows:
        protocol._served.clear()
        alone.append(measure(row, [0], clean_student_scores(row, 0))[0])
    protocol._served.clear()
    clean_answers.cache_clear()
    batches = []
    handle = session.model.register_forward_hook(lambda _m, _i, out: batches.append(out.shape[0]))
    try:
        shared = [measure(row, [0], clean_student_scores(row, 0))[0] for row in rows]
    finally:
        handle.remove()
    assert batches.count(TINY.queries) == 2  # the clean answers and the defended ones, for all three rows
    assert shared == alone
    kept = list(protocol._served.values())
    assert protocol.kept_bytes(kept) < sum(protocol.kept_bytes([k]) for k in kept)  # shared clean answers count once
    monkeypatch.setattr(protocol, "served_budget", lambda: protocol.kept_bytes(kept) + 1)
    oldest = next(iter(protocol._served))
    newest = seed_served(rows[0], setting, 1, CPU)  # the next seed's no longer fits beside them all
    assert oldest not in protocol._served and list(protocol._served.values())[-1] is newest
    assert protocol.kept_bytes(protocol._served.values()) <= protocol.served_budget()


def test_the_clean_setting_serves_the_clean_answers_and_no_whole_forward_more():
    """It leaves the answers untouched, bit for bit: what it serves is what asking would give, read off the seed's
    clean answers and forwards cut short at the hooked layer."""
    attack = dataclasses.replace(TINY, kind="feature")
    row = Row("dehaze", "dehaze", "screen", "asvp", Setting(layers=("enc1",), k=1, a=100.0, placement="exposed"),
              attack, Pairs(n=1, crop=64))
    session, _, _ = teacher_on("dehaze", "dehaze", row.pairs, CPU)
    clean_answers.cache_clear()
    unmoved = seed_answers(row, 0, CPU)
    whole = []
    handle = session.model.register_forward_hook(lambda _m, _i, out: whole.append(out.shape[0]))
    try:
        served = served_to(session.model, row.defense.clean, attacker_queries(session.task, attack, 0), 0, unmoved)
    finally:
        handle.remove()
    assert whole == [1]  # one query, to count the hooked layer's runs; no whole forward on the queries
    asking = asked(session.model, session.task, row.defense.clean, attack, 0)
    assert served.answers is unmoved and torch.equal(served.answers, asking.answers)
    assert torch.equal(served.queries, asking.queries)
    assert len(served.features) == 1 and torch.equal(served.features[0], asking.features[0])


@pytest.mark.parametrize("defense", [Setting(layers=("enc1",), k=1, a=100.0, placement="exposed"),
                                     Setting(layers=("enc1", "dec1"), k=4, a=10.0, layout="spatial", tau=0.9,
                                             placement="exposed"),
                                     Setting(layers=("mid",), k=2, a=30.0, directions="random", placement="exposed")])
def test_an_exposed_setting_serves_its_clean_maps_amplified_bit_for_bit_as_its_own_forwards_would(defense):
    attack = dataclasses.replace(TINY, kind="feature", queries=40)  # two chunks of queries: the op runs on each
    row = Row("dehaze", "dehaze", "attackers", "asvp", defense, attack, Pairs(n=1, crop=64))
    session, _, _ = teacher_on("dehaze", "dehaze", row.pairs, CPU)
    protocol._served.clear()
    served = seed_served(row, defense, 3, CPU)
    assert list(protocol._served) == [served_key(row, defense.clean, 3, CPU), served_key(row, defense, 3, CPU)]
    own = teacher_features(session.model, attacker_queries(session.task, attack, 3), defense)
    assert len(served.features) == len(defense.layers)
    assert all(torch.equal(a, b) for a, b in zip(served.features, own))
    clean = protocol._served[served_key(row, defense.clean, 3, CPU)]
    assert served.answers is clean.answers and not torch.equal(served.features[0], clean.features[0])

