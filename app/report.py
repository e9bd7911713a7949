"""Turn sweep rows into results/RESULTS.md and trade-off figures (means and spread over seeds)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from app.bound import bound_db

from app.thresholds import (DEFAULT_MAX_PSNR_LOSS_DB, DEFAULT_MAX_SSIM_LOSS, HEADLINE, NEGLIGIBLE_PSNR_DB,
                            NEGLIGIBLE_SSIM, PAPER_STUDENT_DROP_DB, negligible, reaches_headline)

SETTING = ["task", "teacher", "teacher_family", "stage", "defense", "attack", "attacker", "budget", "layer_role",
           "layout", "layer", "k", "a", "tau", "placement", "directions", "noise_sigma"]
STRONGEST = dict(layout="channel", layer_role="late", k=4, a=3.0)  # the hardest screened setting


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One line per setting: deltas as mean and std over seeds, validity and protection ratio."""
    df = df.copy()
    if "attacker" not in df:  # a sweep from before the search named only the attacker's kind
        df["attacker"] = df["attack"]
    for column in ("served_rms", "student_clean_rms", "student_rms"):
        if column not in df:
            df[column] = np.nan
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
                learned=("learned", "all"), served_rms=("served_rms", "mean"),
                student_clean_rms=("student_clean_rms", "mean"),
                s_drms=("student_rms", "mean")).reset_index()
    out["s_drms"] -= out.student_clean_rms
    out["bound_db"] = [bound_db(e, d) if e > 0 else np.nan for e, d in zip(out.student_clean_rms, out.served_rms)]
    out["clean_student_gain"] -= out.pop("input_psnr")
    out["protection"] = -out.s_dpsnr / (-out.t_dpsnr).clip(lower=0.1)
    return out


def describe(r, by_role: bool = False) -> str:
    """A setting in words, at its layer (or at its role, to compare teachers of different families)."""
    if r.defense == "output-noise":
        return f"output noise sigma={r.noise_sigma:g}"
    tau = f", tau={r.tau}" if r.tau != "-" else ""
    dirs = "" if r.directions == "top" else f", {r.directions} directions"
    return f"{r.layout} @ {r.layer_role if by_role else r.layer}, k={r.k}, a={r.a:g}{tau}, {r.placement}{dirs}"


def table(s: pd.DataFrame) -> str:
    lines = ["| setting | attacker | teacher dPSNR / dSSIM | student dPSNR | student dSSIM | SSIM drop | "
             "clean student vs input | valid |", "|---|---|---|---|---|---|---|---|"]
    for r in s.itertuples():
        lines.append(f"| {describe(r)} | {r.attack} | {r.t_dpsnr:+.2f} / {r.t_dssim:+.4f} | "
                     f"{r.s_dpsnr:+.2f} ± {r.s_dpsnr_std:.2f} | {r.s_dssim:+.4f} ± {r.s_dssim_std:.4f} | "
                     f"{r.ssim_drop_pct:.1f} % | {r.clean_student_gain:+.2f} dB | {'yes' if r.learned else 'NO'} |")
    return "\n".join(lines)


def best_cheap(s: pd.DataFrame, attack: str):
    """The valid ASVP setting with the largest student drop whose teacher cost is negligible, or None."""
    valid = s[s.learned & (s.defense == "asvp") & (s.attack == attack)]
    cheap = valid[negligible(valid.t_dpsnr, valid.t_dssim)]
    return None if cheap.empty else cheap.loc[cheap.s_dpsnr.idxmin()]


def verdict(s: pd.DataFrame) -> str:
    """Plain words: is the paper's headline reached for this teacher, and under which attacker?"""
    valid = s[s.learned & (s.defense == "asvp")]
    if valid.empty:
        return "No verdict: the clean-taught student did not beat the degraded input."
    parts = []
    for attack in valid.attack.unique():
        b = best_cheap(s, attack)
        if b is None:
            parts.append(f"{attack} KD: no setting keeps the teacher within {NEGLIGIBLE_PSNR_DB} dB and "
                         f"{NEGLIGIBLE_SSIM} SSIM.")
            continue
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
    return "\n".join(f"- **{task}, {family}**: {verdict(ts)}"
                     for (task, family), ts in s.groupby(["task", "teacher_family"], sort=False))


def figure(s: pd.DataFrame, title: str, path: Path) -> None:
    import matplotlib  # only the sweep draws PNGs; the app does not pay for the import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for (defense, attack), grp in s.groupby(["defense", "attack"], sort=False):
        ax.errorbar(grp.t_dpsnr, grp.s_dpsnr, yerr=grp.s_dpsnr_std.fillna(0), fmt="o", capsize=3,
                    label=f"{defense} / {attack} KD", alpha=0.8)
    ax.axhline(-PAPER_STUDENT_DROP_DB, color="red", ls="--", lw=0.8, label=f"paper: student -{PAPER_STUDENT_DROP_DB:g} dB")
    ax.axvline(-NEGLIGIBLE_PSNR_DB, color="grey", ls=":", lw=0.8, label=f"teacher -{NEGLIGIBLE_PSNR_DB} dB")
    ax.set_xlabel("teacher dPSNR (dB, defended - clean)")
    ax.set_ylabel("student dPSNR (dB, mean ± std over seeds)")
    ax.set_title(f"{title}: protection vs teacher cost", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def defaults(s: pd.DataFrame) -> dict[str, dict]:
    """Per bundled teacher, the screened setting with the best protection ratio (ties: the larger
    student drop).

    Only valid settings (the clean-taught student learned) that cost the teacher at most
    DEFAULT_MAX_PSNR_LOSS_DB dB and DEFAULT_MAX_SSIM_LOSS SSIM compete: a default that ruins the served
    output protects nothing worth protecting. A task where every setting costs more falls back to
    its cheapest one (in PSNR).
    """
    best = {}
    for teacher, ts in s[s.stage == "screen"].groupby("teacher", sort=False):
        valid = ts[ts.learned] if ts.learned.any() else ts
        affordable = valid[(valid.t_dpsnr >= -DEFAULT_MAX_PSNR_LOSS_DB) & (valid.t_dssim >= -DEFAULT_MAX_SSIM_LOSS)]
        if affordable.empty:
            r = valid.loc[valid.t_dpsnr.idxmax()]
        else:
            r = affordable.sort_values(["protection", "s_dpsnr"], ascending=[False, True]).iloc[0]
        best[teacher] = dict(layer=r.layer, layout=r.layout, k=int(r.k), a=float(r.a),
                          tau=None if r.tau == "-" else float(r.tau))
    return best


def _cell(r) -> str:
    return f"{r.t_dpsnr:+.2f} / {r.s_dpsnr:+.2f} ± {r.s_dpsnr_std:.2f}"


def families_table(ts: pd.DataFrame) -> str:
    """The screen, setting by setting (at the same role of each body), side by side for a task's teachers."""
    screen = ts[ts.stage == "screen"]
    teachers = list(dict.fromkeys(screen.teacher_family))
    lines = ["| setting | " + " | ".join(f"{t}: teacher / student dPSNR" for t in teachers) + " |",
             "|---" * (len(teachers) + 1) + "|"]
    for setting, grp in screen.groupby(lambda i: describe(screen.loc[i], by_role=True), sort=False):
        by = {r.teacher_family: _cell(r) for r in grp.itertuples()}
        lines.append(f"| {setting} | " + " | ".join(by.get(t, "-") for t in teachers) + " |")
    return "\n".join(lines)


def _strongest(ts: pd.DataFrame):
    hit = ts[(ts.stage == "screen") & (ts.defense == "asvp")]
    for column, value in STRONGEST.items():
        hit = hit[hit[column] == value]
    return None if hit.empty else hit.iloc[0]


def _best_words(b) -> str:
    return "none at that cost" if b is None else f"{b.s_dpsnr:+.2f} ± {b.s_dpsnr_std:.2f} dB"


def compare_families(ts: pd.DataFrame) -> str:
    """Per field teacher of a task, in words: does ASVP behave as it does on our U-Net? Two measured
    facts: what the hardest screened setting costs the teacher and does to the student, and the best
    student drop at a negligible teacher cost (output KD), called different only beyond the seed spread."""
    own = ts[ts.teacher == ts.task]
    lines = []
    for teacher, fs in ts[ts.teacher != ts.task].groupby("teacher", sort=False):
        family, words = fs.teacher_family.iloc[0], []
        hard, hard_own = _strongest(fs), _strongest(own)
        if hard is not None and hard_own is not None:
            words.append(f"the hardest screened setting ({describe(hard, by_role=True)}) costs the teacher "
                         f"{hard.t_dpsnr:+.2f} dB ({hard_own.t_dpsnr:+.2f} on the U-Net) and moves the student "
                         f"{hard.s_dpsnr:+.2f} ± {hard.s_dpsnr_std:.2f} dB ({hard_own.s_dpsnr:+.2f} ± "
                         f"{hard_own.s_dpsnr_std:.2f})")
        b, b_own = best_cheap(fs, "output"), best_cheap(own, "output")
        same = ""
        if b is not None and b_own is not None:
            spread = float(np.hypot(b.s_dpsnr_std or 0, b_own.s_dpsnr_std or 0))
            same = (": a difference beyond the seed spread" if abs(b.s_dpsnr - b_own.s_dpsnr) > spread
                    else ": the same within the seed spread")
        words.append(f"best student change at a negligible teacher cost (output KD): {_best_words(b)} "
                     f"(U-Net: {_best_words(b_own)}){same}")
        lines.append(f"- **{family}** (`{teacher}`): " + "; ".join(words) + ".")
    return "\n".join(lines)


def _hooks(raw: pd.DataFrame) -> str:
    roles = raw[raw.layer_role != "-"].drop_duplicates("layer_role").sort_values("layer_role")
    return ", ".join(f"{r.layer_role} = `{r.layer}`" for r in roles.itertuples())


def write_report(out: Path) -> None:
    """Rebuild RESULTS.md, summary.csv, defaults.json and the figures from every sweep_<teacher>.csv."""
    files = sorted(out.glob("sweep_*.csv"), key=lambda p: (p.stem.partition("-")[0], "-" in p.stem, p.stem))
    rows = pd.concat([pd.read_csv(p) for p in files], ignore_index=True)  # per task, our U-Net first
    s = summarise(rows)
    s.to_csv(out / "summary.csv", index=False)
    (out / "defaults.json").write_text(json.dumps(defaults(s), indent=2))
    parts = [f"# ASVP Lab: does the defense stop distillation?\n\nGenerated by `python -m app.experiments` "
             f"(`--tasks NAME` or `--teachers NAME` re-runs part of it; this file is rebuilt from every "
             f"results/sweep_*.csv). Every bundled teacher of a task is swept with the same settings, hooked at "
             f"the same two roles of its body: `early` (an early stage: our U-Net's enc2) and `late` (the "
             f"family's default hook at the end of the body: our dec1). "
             f"Each teacher's section names its seeds, student budget and hooks; every clean/defended student pair "
             f"shares seed, queries, batch order and budget. "
             f"Sweeps run single-threaded (`--threads 1`, the default): a rerun on the same kind of CPU "
             f"matches bit for bit, while other thread counts round differently and match only within the "
             f"spread. "
             f"Deltas are defended minus clean; the spread is the std over seeds. A row is valid only "
             f"when the clean-taught student beats the degraded input. Paper headline: {HEADLINE}.\n"]
    several = [(task, ts) for task, ts in s.groupby("task", sort=False) if ts.teacher.nunique() > 1]
    if several:
        parts.append("## Families compared\n\nPer task, the screen (output-KD attacker) on every bundled teacher, "
                     "setting by setting; each cell is teacher dPSNR / student dPSNR ± std over seeds.\n")
        for task, ts in several:
            parts.append(f"### {task}\n\n{families_table(ts)}\n\n{compare_families(ts)}\n")
    for task, ts in s.groupby("task", sort=False):
        parts.append(f"## {task}\n")
        for teacher, tt in ts.groupby("teacher", sort=False):
            figure(tt, f"{teacher} ({tt.teacher_family.iloc[0]})", out / f"tradeoff_{teacher}.png")
            raw = rows[rows.teacher == teacher]
            parts.append(f"### {teacher}: {tt.teacher_family.iloc[0]}\n\nSeeds {sorted(raw.seed.unique().tolist())}, "
                         f"student budget {int(raw.budget.iloc[0])} steps ({raw.student.iloc[0]}), {len(raw)} "
                         f"students taught by a defended teacher; hooks: {_hooks(raw)}.\n\n"
                         f"**Verdict.** {verdict(tt)}\n\n![trade-off](tradeoff_{teacher}.png)\n")
            for stage, title in (("screen", "Screen (output-KD attacker)"),
                                 ("attackers", "Best setting under each attacker"),
                                 ("baselines", "Baselines at the same served-output distortion (output-KD attacker)")):
                part = tt[tt.stage == stage]
                if not part.empty:
                    parts.append(f"#### {title}\n\n{table(part)}\n")
    (out / "RESULTS.md").write_text("\n".join(parts))
