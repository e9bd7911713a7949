"""Turn sweep rows into results/RESULTS.md and trade-off figures (means and spread over seeds)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from app.thresholds import (DEFAULT_MAX_PSNR_LOSS_DB, DEFAULT_MAX_SSIM_LOSS, HEADLINE, NEGLIGIBLE_PSNR_DB,
                            NEGLIGIBLE_SSIM, PAPER_STUDENT_DROP_DB, negligible, reaches_headline)

SETTING = ["task", "stage", "family", "attack", "layout", "layer", "k", "a", "tau", "placement", "directions", "noise_sigma"]


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One line per setting: deltas as mean and std over seeds, validity and protection ratio."""
    df = df.copy()
    df["tau"] = df["tau"].astype(object).fillna("-")
    df["t_dpsnr"] = df.teacher_psnr - df.teacher_clean_psnr
    df["t_dssim"] = df.teacher_ssim - df.teacher_clean_ssim
    df["s_dpsnr"] = df.student_psnr - df.student_clean_psnr
    df["s_dssim"] = df.student_ssim - df.student_clean_ssim
    df["ssim_drop_pct"] = -100 * df.s_dssim / df.student_clean_ssim
    df["learned"] = df.student_clean_psnr > df.input_psnr
    g = df.groupby(SETTING, sort=False, dropna=False)
    out = g.agg(seeds=("seed", "count"), t_dpsnr=("t_dpsnr", "mean"), t_dssim=("t_dssim", "mean"),
                s_dpsnr=("s_dpsnr", "mean"), s_dpsnr_std=("s_dpsnr", "std"), s_dssim=("s_dssim", "mean"),
                s_dssim_std=("s_dssim", "std"), ssim_drop_pct=("ssim_drop_pct", "mean"),
                clean_student_gain=("student_clean_psnr", "mean"), input_psnr=("input_psnr", "mean"),
                learned=("learned", "all")).reset_index()
    out["clean_student_gain"] -= out.pop("input_psnr")
    out["protection"] = -out.s_dpsnr / (-out.t_dpsnr).clip(lower=0.1)
    return out


def describe(r) -> str:
    if r.family == "output-noise":
        return f"output noise sigma={r.noise_sigma:g}"
    tau = f", tau={r.tau}" if r.tau != "-" else ""
    dirs = "" if r.directions == "top" else f", {r.directions} directions"
    return f"{r.layout} @ {r.layer}, k={r.k}, a={r.a:g}{tau}, {r.placement}{dirs}"


def table(s: pd.DataFrame) -> str:
    lines = ["| setting | attacker | teacher dPSNR / dSSIM | student dPSNR | student dSSIM | SSIM drop | "
             "clean student vs input | valid |", "|---|---|---|---|---|---|---|---|"]
    for r in s.itertuples():
        lines.append(f"| {describe(r)} | {r.attack} | {r.t_dpsnr:+.2f} / {r.t_dssim:+.4f} | "
                     f"{r.s_dpsnr:+.2f} ± {r.s_dpsnr_std:.2f} | {r.s_dssim:+.4f} ± {r.s_dssim_std:.4f} | "
                     f"{r.ssim_drop_pct:.1f} % | {r.clean_student_gain:+.2f} dB | {'yes' if r.learned else 'NO'} |")
    return "\n".join(lines)


def verdict(s: pd.DataFrame) -> str:
    """Plain words: is the paper's headline reached for this task, and under which attacker?"""
    valid = s[s.learned & (s.family == "asvp")]
    if valid.empty:
        return "No verdict: the clean-taught student did not beat the degraded input."
    cheap = valid[negligible(valid.t_dpsnr, valid.t_dssim)]
    parts = []
    for attack, grp in valid.groupby("attack", sort=False):
        c = cheap[cheap.attack == attack]
        if c.empty:
            parts.append(f"{attack} KD: no setting keeps the teacher within {NEGLIGIBLE_PSNR_DB} dB and "
                         f"{NEGLIGIBLE_SSIM} SSIM.")
            continue
        b = c.loc[c.s_dpsnr.idxmin()]
        hit = reaches_headline(b.s_dpsnr, b.ssim_drop_pct)
        noise = " (within seed noise: |mean| < std)" if abs(b.s_dpsnr) < (b.s_dpsnr_std or 0) else ""
        parts.append(f"{attack} KD: best student change at a negligible teacher cost is {b.s_dpsnr:+.2f} ± "
                     f"{b.s_dpsnr_std:.2f} dB{noise}, SSIM {-b.ssim_drop_pct:+.1f} % ({describe(b)}): "
                     f"teacher {b.t_dpsnr:+.2f} dB / SSIM {b.t_dssim:+.4f}; headline {'REACHED' if hit else 'not reached'}.")
    return " ".join(parts)


def measured_verdicts(out: Path) -> str:
    """Per-task verdicts from the last sweep, as markdown (the About tab shows them)."""
    path = out / "summary.csv"
    if not path.exists():
        return "No sweep has been run yet: `python -m app.experiments`."
    s = pd.read_csv(path)
    return "\n".join(f"- **{task}**: {verdict(ts)}" for task, ts in s.groupby("task", sort=False))


def figure(s: pd.DataFrame, task: str, path: Path) -> None:
    import matplotlib  # only the sweep draws PNGs; the app does not pay for the import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for (family, attack), grp in s.groupby(["family", "attack"], sort=False):
        ax.errorbar(grp.t_dpsnr, grp.s_dpsnr, yerr=grp.s_dpsnr_std.fillna(0), fmt="o", capsize=3,
                    label=f"{family} / {attack} KD", alpha=0.8)
    ax.axhline(-PAPER_STUDENT_DROP_DB, color="red", ls="--", lw=0.8, label=f"paper: student -{PAPER_STUDENT_DROP_DB:g} dB")
    ax.axvline(-NEGLIGIBLE_PSNR_DB, color="grey", ls=":", lw=0.8, label=f"teacher -{NEGLIGIBLE_PSNR_DB} dB")
    ax.set_xlabel("teacher dPSNR (dB, defended - clean)")
    ax.set_ylabel("student dPSNR (dB, mean ± std over seeds)")
    ax.set_title(f"{task}: protection vs teacher cost")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def defaults(s: pd.DataFrame) -> dict[str, dict]:
    """Per task, the screened setting with the best protection ratio (ties: the larger student drop).

    Only valid settings (the clean-taught student learned) that cost the teacher at most
    DEFAULT_MAX_PSNR_LOSS_DB dB and DEFAULT_MAX_SSIM_LOSS SSIM compete: a default that ruins the served
    output protects nothing worth protecting. A task where every setting costs more falls back to
    its cheapest one (in PSNR).
    """
    best = {}
    for task, ts in s[s.stage == "screen"].groupby("task", sort=False):
        valid = ts[ts.learned] if ts.learned.any() else ts
        affordable = valid[(valid.t_dpsnr >= -DEFAULT_MAX_PSNR_LOSS_DB) & (valid.t_dssim >= -DEFAULT_MAX_SSIM_LOSS)]
        if affordable.empty:
            r = valid.loc[valid.t_dpsnr.idxmax()]
        else:
            r = affordable.sort_values(["protection", "s_dpsnr"], ascending=[False, True]).iloc[0]
        best[task] = dict(layer=r.layer, layout=r.layout, k=int(r.k), a=float(r.a),
                          tau=None if r.tau == "-" else float(r.tau))
    return best


def write_report(out: Path) -> None:
    """Rebuild RESULTS.md, summary.csv, defaults.json and the figures from every sweep_<task>.csv."""
    rows = pd.concat([pd.read_csv(p) for p in sorted(out.glob("sweep_*.csv"))], ignore_index=True)
    s = summarise(rows)
    s.to_csv(out / "summary.csv", index=False)
    (out / "defaults.json").write_text(json.dumps(defaults(s), indent=2))
    parts = [f"# ASVP Lab: does the defense stop distillation?\n\nGenerated by `python -m app.experiments` "
             f"(`--tasks NAME` re-runs one task; this file is rebuilt from every results/sweep_*.csv). "
             f"Each task section names its seeds and student budget; every clean/defended student pair "
             f"shares seed, queries, batch order and budget. "
             f"Sweeps run single-threaded (`--threads 1`, the default): a rerun on the same kind of CPU "
             f"matches bit for bit, while other thread counts round differently and match only within the "
             f"spread. "
             f"Deltas are defended minus clean; the spread is the std over seeds. A row is valid only "
             f"when the clean-taught student beats the degraded input. Paper headline: {HEADLINE}.\n"]
    for task, ts in s.groupby("task", sort=False):
        figure(ts, task, out / f"tradeoff_{task}.png")
        raw = rows[rows.task == task]
        parts.append(f"## {task}\n\nSeeds {sorted(raw.seed.unique().tolist())}, student budget "
                     f"{int(raw.budget.iloc[0])} steps ({raw.student.iloc[0]}), {len(raw)} students taught by a "
                     f"defended teacher.\n\n"
                     f"**Verdict.** {verdict(ts)}\n\n![trade-off](tradeoff_{task}.png)\n")
        for stage, title in (("screen", "Screen (output-KD attacker)"), ("attackers", "Best setting under each attacker"),
                             ("baselines", "Baselines at the same served-output distortion (output-KD attacker)")):
            part = ts[ts.stage == stage]
            if not part.empty:
                parts.append(f"### {title}\n\n{table(part)}\n")
    (out / "RESULTS.md").write_text("\n".join(parts))
