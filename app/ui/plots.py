"""Plotly figures for the app: spectra, frequency content, live loss curves, trade-offs."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from app.study.findings import delta_text, setting_words, floor_text, teacher_on_task


LAYOUT = dict(height=320, margin=dict(l=50, r=20, t=50, b=45), template="plotly_white", title_font_size=13,
              legend=dict(orientation="h", y=-0.25))
TITLE_CHARS = 36  # what fits across a plot a third of the Lab's width


def short(text: str, limit: int = TITLE_CHARS) -> str:
    """`text`, its middle elided when it would not fit a title line (layer names get long)."""
    return text if len(text) <= limit else text[:limit // 2 - 1] + "…" + text[-(limit - limit // 2):]


def spectra_figure(before: np.ndarray, after: np.ndarray, k: int, layer: str) -> go.Figure:
    """Singular values of the hooked feature map before and after ASVP, log scale, top-k marked."""
    idx = np.arange(1, len(before) + 1)
    fig = go.Figure([go.Scatter(x=idx, y=before, mode="lines+markers", name="clean"),
                     go.Scatter(x=idx, y=after, mode="lines+markers", name="with ASVP")])
    if k > 0:
        fig.add_vrect(x0=0.5, x1=k + 0.5, fillcolor="orange", opacity=0.15, line_width=0,
                      annotation_text=f"top-{k}", annotation_position="top left")
    fig.update_layout(title=f"Singular values<br><sup>at {short(layer)}</sup>", xaxis_title="index i", yaxis_title="sigma_i",
                      yaxis_type="log", **LAYOUT)
    return fig


def frequency_figure(freqs: np.ndarray, power: np.ndarray) -> go.Figure:
    """Radial power spectrum of the perturbation the defense adds to the served output (a note
    instead of a line where it adds none: a log axis would draw the floor of float rounding)."""
    unchanged = not np.any(power > 0)
    fig = go.Figure() if unchanged else go.Figure(go.Scatter(x=freqs, y=power, mode="lines", name="perturbation"))
    if unchanged:
        fig.add_annotation(text="no served change:<br>the output is the clean teacher's", showarrow=False,
                           x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(title="Perturbation spectrum<br><sup>radial power of the served change</sup>",
                      xaxis_title="cycles / pixel",
                      yaxis_title="power", yaxis_type="linear" if unchanged else "log", **LAYOUT)
    return fig


def loss_figure(history: dict[str, list[tuple[int, float]]]) -> go.Figure:
    """Live distillation loss curves, one per student."""
    fig = go.Figure([go.Scatter(x=[s for s, _ in pts], y=[v for _, v in pts], mode="lines", name=name)
                     for name, pts in history.items()])
    fig.update_layout(title="Student fit to the teacher's answers", xaxis_title="step",
                      yaxis_title="loss", yaxis_type="log", **LAYOUT)
    return fig


def sweep_figure(a_values, teacher_d: list[float], high_share: list[float]) -> go.Figure:
    """Teacher cost and the high-frequency share of the perturbation as the amplification grows."""
    fig = go.Figure([go.Scatter(x=a_values, y=teacher_d, mode="lines+markers", name="teacher dPSNR (dB)"),
                     go.Scatter(x=a_values, y=high_share, mode="lines+markers", name="high-freq share", yaxis="y2")])
    fig.update_layout(title="Quick sweep over a on this image", xaxis_title="amplification a",
                      yaxis_title="teacher dPSNR (dB)",
                      yaxis2=dict(title="share", overlaying="y", side="right", range=[0, 1]), **LAYOUT)
    return fig


def _hover(r) -> str:
    return (f"<b>{teacher_on_task(r)}</b>, {r.attacker}<br>{setting_words(r)}"
            f"<br>teacher {r.t_dpsnr:+.2f} dB, student {delta_text(r)} dB "
            f"({r.seeds} seeds)<br>noise floor {floor_text(r.noise_floor, ' dB')}")


def explorer_figure(rows, headline_db: float, negligible_db: float) -> go.Figure:
    """Teacher cost vs student drop for every measured ASVP setting in `rows` (summary lines, one
    colour per threat model, hover naming the setting and its spread; customdata: the line's id),
    with the paper's headline region, the widest shown noise floor and the in-line points'
    output-KD bounds."""
    fig = go.Figure()
    for threat, grp in rows.groupby("threat", sort=False):
        fig.add_trace(go.Scatter(x=grp.t_dpsnr, y=grp.s_dpsnr, mode="markers", name=threat,
                                 error_y=dict(type="data", array=grp.s_dpsnr_std.fillna(0), thickness=1, width=0),
                                 customdata=list(grp.index), hovertext=[_hover(r) for r in grp.itertuples()],
                                 hoverinfo="text", marker=dict(size=8, opacity=0.8)))
    bound = rows[(rows.placement == "inline") & rows.bound_db.notna()]
    fig.add_trace(go.Scatter(x=bound.t_dpsnr, y=bound.bound_db, mode="markers", name="output-KD bound",
                             marker=dict(symbol="x", color="grey", size=6), hoverinfo="skip"))
    low = min(-headline_db - 1, float(rows.s_dpsnr.min()) if len(rows) else 0.0)
    fig.add_shape(type="rect", x0=-negligible_db, x1=max(1.0, float(rows.t_dpsnr.max()) if len(rows) else 0.0),
                  y0=low, y1=-headline_db, fillcolor="red", opacity=0.1, line_width=0)
    fig.add_annotation(x=-negligible_db, y=-headline_db, text="paper's headline", showarrow=False, xanchor="left",
                       yanchor="top", font=dict(color="red", size=11))
    floor = float(rows.noise_floor.max()) if len(rows) else float("nan")
    if floor == floor:
        fig.add_hrect(y0=-floor, y1=floor, fillcolor="grey", opacity=0.15, line_width=0,
                      annotation_text=f"noise floor ±{floor:.2f} dB (widest shown)", annotation_position="top left")
    fig.update_layout(title=f"{len(rows)} measured settings: click one to load it into the Lab",
                      xaxis_title="teacher ΔPSNR (dB, defended - clean)", yaxis_title="student ΔPSNR (dB, mean ± std)",
                      **{**LAYOUT, "height": 520, "legend": dict(orientation="h", y=-0.18)})
    return fig
