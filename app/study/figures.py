"""The report's figures (PNG, matplotlib): per teacher, the trade-off with its frontiers and the
output-KD bound, where the students sit against that bound, and the budget curve."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from app.study.findings import THREATS, confirmed
from app.study.grid import frontier
from app.study.thresholds import NEGLIGIBLE_PSNR_DB, PAPER_STUDENT_DROP_DB


def _pyplot():
    import matplotlib  # only the report draws PNGs; the app does not pay for the import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tradeoff(ts: pd.DataFrame, title: str, path: Path) -> None:
    """Left: teacher cost vs student drop, every screened point faint, each threat model's confirmed
    frontier with its spread, and the output-KD bound at each in-line frontier point. Right: the
    measured student drop against that bound (a convex student sits on or above the diagonal)."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    asvp = ts[(ts.defense == "asvp") & (ts.stage != "budget")]
    for threat, grp in asvp.groupby("threat", sort=False):
        dots = left.scatter(grp.t_dpsnr, grp.s_dpsnr, s=10, alpha=0.25, label=f"{threat}: screened")
        sure = confirmed(grp)
        if sure.empty:
            continue
        edge = frontier(sure).sort_values("t_dpsnr")
        left.errorbar(edge.t_dpsnr, edge.s_dpsnr, yerr=edge.s_dpsnr_std, fmt="o-", capsize=3,
                      color=dots.get_facecolor()[0][:3], label=f"{threat}: frontier")
        if threat in THREATS[:2]:  # in-line: the served output moved
            left.plot(edge.t_dpsnr, edge.bound_db, "x:", color="black", lw=0.8)
    left.plot([], [], "x:", color="black", lw=0.8, label="output-KD bound (convex student)")
    left.axhline(-PAPER_STUDENT_DROP_DB, color="red", ls="--", lw=0.8, label=f"paper: -{PAPER_STUDENT_DROP_DB:g} dB")
    left.axvline(-NEGLIGIBLE_PSNR_DB, color="grey", ls=":", lw=0.8, label=f"teacher -{NEGLIGIBLE_PSNR_DB} dB")
    left.set_xscale("symlog", linthresh=0.1)
    left.set_xlabel("teacher dPSNR (dB, defended - clean)")
    left.set_ylabel("student dPSNR (dB, mean ± std over seeds)")
    left.legend(fontsize=6)
    output_kd = asvp[(asvp.threat == THREATS[0]) & asvp.bound_db.notna()]
    right.scatter(output_kd.bound_db, output_kd.s_dpsnr, s=14, alpha=0.6, label=THREATS[0])
    low = float(min(output_kd.bound_db.min(), output_kd.s_dpsnr.min(), -0.1)) if len(output_kd) else -1.0
    right.plot([low, 0], [low, 0], color="black", lw=0.8, label="student = bound")
    right.set_xlabel("output-KD bound (dB)")
    right.set_ylabel("student dPSNR (dB)")
    right.legend(fontsize=6)
    fig.suptitle(f"{title}: protection vs teacher cost", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def budget_curve(curve: pd.DataFrame, title: str, path: Path) -> None:
    """Student drop vs student budget, per setting and attacker (mean ± std over seeds)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, grp in curve.groupby("curve", sort=False):
        grp = grp.sort_values("budget")
        ax.errorbar(grp.budget, grp.s_dpsnr, yerr=grp.s_dpsnr_std, fmt="o-", capsize=3, label=label)
    floor = curve.noise_floor.iloc[0]  # one teacher: one floor (none yet with fewer than three seeds)
    if pd.notna(floor):
        ax.axhspan(-floor, floor, color="grey", alpha=0.15, label=f"noise floor ± {floor:.2f} dB")
    ax.set_xscale("log")
    budgets = sorted(curve.budget.unique())
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.minorticks_off()  # a log axis labels its minor ticks too, over the budgets' own labels
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel("student budget (steps)")
    ax.set_ylabel("student dPSNR (dB, mean ± std over seeds)")
    ax.set_title(f"{title}: does the damage persist?", fontsize=10)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

