"""The Guided tour tab: three settings from the search for a class, each loaded into the Lab with one click."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from app.study.findings import scenarios


def tour_tab(everything: pd.DataFrame) -> list[tuple[gr.Button, int]]:
    """The tour's buttons, each with the id of the measured setting it loads (none before a search)."""
    gr.Markdown("Three settings from the search, for a class: each loads into the Lab with one click "
                "(then press **Distill** to see it happen on the image).")
    tour = []
    for title, row, text in scenarios(everything):
        with gr.Group():
            gr.Markdown(f"### {title}\n\n{text}")
            tour.append((gr.Button(f"Load: {title}"), row))
    if not tour:
        gr.Markdown("No search has been run yet: `python -m app.experiments`.")
    return tour
