"""The Trade-off tab: every setting the search measured, filtered, as a plotly explorer and a table in
words; a click on a point loads it into the Lab. Below them, a live sweep over a on the Lab's image."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from app.data.tasks import TASKS, get_task
from app.lab import looks
from app.study import thresholds
from app.ui import plots
from app.ui.inputs import defense_from, user_errors
from app.ui.settings import COLUMNS, measured


SWEEP_A = (1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 8.0)


# a click on an explorer point writes "<id> <time>" into a hidden textbox, whose change loads the setting
POINT_BRIDGE = """() => setInterval(() => {
  const bridge = document.querySelector('#explorer-point');
  if (bridge) bridge.style.display = 'none';  // a visible="hidden" textbox would fire no events
  for (const plot of document.querySelectorAll('#explorer .js-plotly-plot')) {
    if (plot.asvpWired) continue;
    plot.asvpWired = true;
    plot.on('plotly_click', (event) => {
      const id = event.points[0].customdata;
      const box = document.querySelector('#explorer-point textarea');
      if (id === undefined || !box) return;
      box.value = id + ' ' + Date.now();  // a fresh value each click: the same point twice still loads
      box.dispatchEvent(new Event('input', {bubbles: true}));
    });
  }
}, 300)"""


@dataclass
class Explorer:
    filters: list  # tasks, families, attackers, placements: explore()'s inputs
    plot: gr.Plot
    point: gr.Textbox  # written by POINT_BRIDGE with the clicked point's id
    table: gr.Dataframe
    sweep_btn: gr.Button
    sweep_plot: gr.Plot


def explorer_tab(everything: pd.DataFrame) -> Explorer:
    gr.Markdown("Every setting the search measured (`python -m app.experiments`, real benchmark pairs, mean ± std "
                "over seeds; results/RESULTS.md). Filter, hover for the setting, click a point to load it into the "
                "Lab. Costly settings stretch the axes: drag a box around zero teacher cost (where the paper's "
                "headline sits) to zoom in, double-click to zoom out.")
    with gr.Row():
        tasks = gr.CheckboxGroup([(t.title, t.name) for t in TASKS.values()], value=list(TASKS), label="Tasks")
        families = gr.CheckboxGroup(sorted(set(everything.teacher_family)), value=sorted(set(everything.teacher_family)),
                                    label="Families")
        placements = gr.CheckboxGroup(["inline", "exposed"], value=["inline", "exposed"], label="Placement")
    attackers_shown = gr.Dropdown(sorted(set(everything.attacker)), value=sorted(set(everything.attacker)),
                                  multiselect=True, label="Attackers")
    explorer = Explorer([tasks, families, attackers_shown, placements],
                        gr.Plot(elem_id="explorer", label="teacher cost vs student drop"),
                        gr.Textbox(elem_id="explorer-point", show_label=False, container=False),
                        gr.Dataframe(label="the settings shown", interactive=False),
                        gr.Button("Quick sweep over a (current image)"),
                        gr.Plot(label="teacher cost as a grows, on the Lab's image and setting"))
    gr.on([f.change for f in explorer.filters], explore, explorer.filters, [explorer.plot, explorer.table],
          api_name="explore")
    return explorer


def explore(tasks, families, attackers, placements):
    """The explorer's figure and table for the settings that pass every filter."""
    s = measured()
    shown = s[s.task.isin(tasks or []) & s.teacher_family.isin(families or []) & s.attacker.isin(attackers or [])
              & s.placement.isin(placements or [])]
    figure = plots.explorer_figure(shown, thresholds.PAPER_STUDENT_DROP_DB, thresholds.NEGLIGIBLE_PSNR_DB)
    in_words = shown.assign(task=shown.task.map(lambda name: get_task(name).title))
    return figure, in_words[list(COLUMNS)].rename(columns=COLUMNS).round(3)


@user_errors
def on_sweep(state, scene, k, layer, layout, adaptive, tau, placement):
    if scene is None:
        raise gr.Error("Pick an image first.")
    points = [looks.teacher_cost(state.model, scene, defense_from(k, a, layer, layout, adaptive, tau, placement))
              for a in SWEEP_A]
    return plots.sweep_figure(SWEEP_A, [p[0] for p in points], [p[1] for p in points])
