"""The README's short verdict is copied by hand from results/RESULTS.md: every decimal in it must be
one the report printed, so a rerun of the search that moves a number fails here until the README
follows."""
import re

from helpers import ROOT


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
