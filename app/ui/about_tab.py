"""The About tab: a handout on ASVP, the threat models, the output-KD bound and what the search measured."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from app.defense.bound import DERIVATION
from app.study.report import measured_verdicts
from app.ui.settings import RESULTS


ABOUT = (Path(__file__).parent / "about.md").read_text()


def about_tab() -> None:
    gr.Markdown(ABOUT + f"\n## The output-KD bound\n\n{DERIVATION}\n\n## What this lab measured\n\n"
                "From results/RESULTS.md (teacher cost and student change against the ground truth, "
                "mean ± std over seeds, beside the noise floor):\n\n" + measured_verdicts(RESULTS))
