"""Plotly figures for the app: spectra, frequency content, live loss curves, trade-offs."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

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
    """Radial power spectrum of the perturbation the defense adds to the served output."""
    fig = go.Figure(go.Scatter(x=freqs, y=np.maximum(power, 1e-20), mode="lines", name="perturbation"))
    fig.update_layout(title="Perturbation spectrum<br><sup>radial power of the served change</sup>",
                      xaxis_title="cycles / pixel",
                      yaxis_title="power", yaxis_type="log", **LAYOUT)
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
