"""The README's short verdict is copied by hand from results/RESULTS.md: every decimal in it must be
one the report printed, so a rerun of the search that moves a number fails here until the README
follows."""
import re

import pandas as pd
from helpers import ROOT

from app.study.findings import best, headline


def short_verdict() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("In short, as measured here")
    return text[start:text.index("\n\n", start)]


def test_every_number_in_the_readme_verdict_is_in_the_report():
    report = (ROOT / "results" / "RESULTS.md").read_text()
    verdict = short_verdict()
    spreads = re.findall(r"[+-]?\d+\.\d+ ± \d+\.\d+", verdict)  # a drop with its spread: the pair, verbatim
    numbers = re.findall(r"[+-]?\d+\.\d+", re.sub(r"[+-]?\d+\.\d+ ± \d+\.\d+", "", verdict))
    assert spreads and numbers, "the README's verdict names no measured numbers"
    appears = lambda n: re.search(rf"(?<![\d.]){re.escape(n.lstrip('+'))}(?![\d])", report)
    missing = [n for n in spreads + numbers if not appears(n)]
    assert not missing, f"README numbers not in results/RESULTS.md: {missing}"


def test_the_readme_verdict_gives_each_headline_its_new_columns():
    """Where the answer table says the headline holds, the README's verdict states what the table's later columns
    say of it: what theft is worth, and what the strongest informed attacker and the field student leave of the
    drop, where measured (each as the table prints it, mean ± spread)."""
    s = pd.read_csv(ROOT / "results" / "summary.csv")
    verdict, hits = short_verdict(), [r for r in best(s, cheap=True).itertuples() if headline(r)]
    assert hits, "the report names no setting where the headline holds: the README's verdict says otherwise"
    for r in hits:
        for value, spread in ((r.theft_value, r.theft_value_std), (r.informed_dpsnr, r.informed_dpsnr_std),
                              (r.field_dpsnr, r.field_dpsnr_std)):
            if not pd.isna(value):
                assert f"{value:+.2f} ± {spread:.2f}" in verdict, (r.teacher, r.threat, value)


def test_the_readme_verdict_counts_the_informed_stage_as_the_report_does():
    """The informed stage's count (how many settings per placement, how many keep a drop) is a pair of integers the
    decimal check above cannot see: each placement's count clause in the verdict must be the report's, verbatim."""
    report, verdict = (ROOT / "results" / "RESULTS.md").read_text(), " ".join(short_verdict().split())
    clauses = re.findall(r"(?:exposed|in-line), \d+ settings: a drop beyond the floor left at \d+", verdict)
    assert clauses, "the README's verdict does not count what the informed attackers left"
    missing = [c for c in clauses if not re.search(rf"{re.escape(c)}(?!\d)", report)]
    assert not missing, f"informed counts not in results/RESULTS.md: {missing}"
