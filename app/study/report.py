"""Write results/RESULTS.md, summary.csv, defaults.json and the figures from the search's files (sweep_*,
and the notheft_*, informed_* and field_* stages beside them).

RESULTS.md opens with the answer (per task, teacher and threat model: what theft is worth, the best student
drop at a negligible teacher cost, its spread, the noise floor, what the strongest informed attacker and the
field student leave of it, the output-KD bound, and yes/no on the paper's headline), then the value of theft,
the informed attackers and the field students, derives the bound, then per teacher shows the frontier, every
attacker, the baselines and the budget curve. app.study.findings computes every number; this module only
writes them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from app.attack.distill import FIELD_STEPS
from app.attack.field import NAFNET_LR
from app.defense.bound import DERIVATION
from app.study import field, informed, notheft
from app.study.figures import budget_curve, tradeoff
from app.study.findings import (EXPOSED_NOTE, MIN_SEEDS, THREATS, against_normalised, best, confirmed, defaults,
                                delta_text, field_lines, floor_text, headline, informed_lines, setting_words,
                                strongest_informed, summarise, theft_values, with_field, with_informed, with_theft)
from app.study.grid import frontier
from app.study.thresholds import HEADLINE, negligible
from app.teachers.registry import file_stem, teacher_order


def _bound(r) -> str:
    if r.placement == "exposed":
        return "0 (outputs unchanged)"
    return "-" if pd.isna(r.bound_db) else f"{r.bound_db:+.2f}"


def _effect(r) -> str:
    """Which test a drop fails: the teacher's noise floor, or its own spread over seeds (none yet with fewer than
    MIN_SEEDS: a row whose seeds are still landing)."""
    if r.seeds < MIN_SEEDS:
        return f"not yet ({r.seeds} of {MIN_SEEDS}+ seeds)"
    if r.effect:
        return "yes"
    return "no (within its own spread)" if r.beyond_floor else "no (within the floor)"


def _to_teacher(value: float) -> str:
    """A PSNR to the clean teacher's answer, or a change of one; rows from before fidelity was measured have none."""
    if pd.isna(value):
        return "-"
    return "identical" if value == float("inf") else f"{value:+.2f}"


def answer_table(s: pd.DataFrame) -> str:
    """Per task, teacher and threat model: the best confirmed drop at a negligible teacher cost."""
    found, fielded = best(s, cheap=True).set_index(["teacher", "threat"]), field.fielded(s)
    lines = ["| task | teacher | threat model | value of theft (dB) | best setting at a negligible teacher cost | "
             "attacker | scored against | student dPSNR (dB) | student SSIM drop | student dPSNR to the teacher (dB) | "
             "clean student vs input (dB) | noise floor (dB) | effect | against the strongest informed attacker (dB) | "
             "field student, long budget (dB) | output-KD bound (dB) | paper's headline |", "|---" * 17 + "|"]
    for (task, teacher), ts in s.groupby(["task", "teacher"], sort=False):
        family, theft = ts.teacher_family.iloc[0], _theft(ts.iloc[0])
        for threat in THREATS:
            if (teacher, threat) not in found.index:
                lines.append(f"| {task} | {family} | {threat} | {theft} | none: {_why_none(ts[ts.threat == threat])} "
                             f"| | {ts.measure.iloc[0]} | | | | | {floor_text(ts.noise_floor.iloc[0])} | | | | | no |")
                continue
            r = found.loc[(teacher, threat)]
            lines.append(f"| {task} | {family} | {threat} | {theft} | {setting_words(r)} | {r.attacker} | "
                         f"{r.measure} | "
                         f"{delta_text(r)} | {r.ssim_drop_pct:.1f} % | {_to_teacher(r.s_fidelity_dpsnr)} | "
                         f"{r.clean_student_gain:+.2f} | {floor_text(r.noise_floor)} | {_effect(r)} | {_informed(r)} | "
                         f"{_field(r, threat, (teacher, threat) in fielded)} | {_bound(r)} | "
                         f"{'YES' if headline(r) else 'no'} |")
    return "\n".join(lines)


def _theft(r) -> str:
    """A teacher's value of theft with its spread, or '-' before its no-theft students ran."""
    if pd.isna(getattr(r, "theft_value", np.nan)):
        return "-"
    return f"{r.theft_value:+.2f}" + ("" if pd.isna(r.theft_value_std) else f" ± {r.theft_value_std:.2f}")


def _informed(r) -> str:
    """What is left of a line's drop against the informed attacker its setting withstands worst, or '-'."""
    return _left(r, "informed", getattr(r, "informed_attacker", ""))


def _field(r, threat: str, fielded: bool) -> str:
    """A line's field student at the long budget (saying so where its clean twins did not learn: then its drop
    does not count); where it has none, why the field stage (app.study.field) leaves it out, or '-' where the
    stage fields it (app.study.field.fielded) but has not reached it yet."""
    if pd.isna(getattr(r, "field_dpsnr", np.nan)):
        if not field.damaged(r):
            return "no drop to test"
        if threat not in field.MEASURED:
            return "not fielded (in-line, the stage fields output KD)"  # THREATS less field.MEASURED
        if not fielded:
            return f"not fielded (not among the {field.SETTINGS} largest drops)"
    learned = getattr(r, "field_learned", np.nan)
    unlearned = "" if pd.isna(learned) or learned else "; its clean twin did not learn: no count"
    return _left(r, "field", f"{getattr(r, 'field_steps', 0):.0f} steps{unlearned}")


def _left(r, stage: str, what: str) -> str:
    """A line's change as another stage measured it (mean ± spread, what measured it, whether an effect), or '-'
    (a summary from before that stage has not its columns)."""
    value = getattr(r, f"{stage}_dpsnr", np.nan)
    if pd.isna(value):
        return "-"
    spread = getattr(r, f"{stage}_dpsnr_std")
    effect = getattr(r, f"{stage}_effect")
    return f"{value:+.2f}{'' if pd.isna(spread) else f' ± {spread:.2f}'} ({what}{'' if effect else ', no effect'})"


def theft_table(values: pd.DataFrame) -> str:
    """Per teacher: what theft is worth, and where the answer table's picks leave the thief against the no-theft
    student."""
    def signed(value: float) -> str:
        return "-" if pd.isna(value) else f"{value:+.2f}"

    head = ["task", "teacher", "scored against", "seeds", "no-theft student vs input (dB)",
            "clean-taught student vs input (dB)", "value of theft (dB)"] + [
           f"defended student vs no-theft, {t} (dB)" for t in THREATS]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for _, r in values.iterrows():
        spread = "" if pd.isna(r.theft_value_std) else f" ± {r.theft_value_std:.2f}"
        lines.append(f"| {r.task} | {r.teacher_family} | {r.measure} | {r.seeds} | {signed(r.no_theft_gain)} | "
                     f"{signed(r.clean_gain)} | {signed(r.theft_value)}{spread} | "
                     + " | ".join(signed(r[t]) for t in THREATS) + " |")
    return "\n".join(lines)


def _why_none(tt: pd.DataFrame) -> str:
    asvp = tt[(tt.defense == "asvp") & (tt.stage != "budget")]
    if asvp.empty:
        return "not measured"
    if not asvp.learned.any():
        return "its clean-taught students never beat the input"
    if (asvp.seeds < MIN_SEEDS).all():
        return f"no setting confirmed with {MIN_SEEDS}+ seeds"
    if confirmed(asvp).empty:  # measured enough, but not valid: the drop would not count
        return f"at every setting with {MIN_SEEDS}+ seeds a clean-taught student fails to beat the input"
    return "every confirmed setting costs the teacher more"


def answer_words(s: pd.DataFrame) -> str:
    """The table's yes/no in one sentence: where the headline holds, under which attacker."""
    hits = [r for r in best(s, cheap=True).itertuples() if headline(r)]
    if not hits:
        return (f"**The paper's headline ({HEADLINE}) holds nowhere**: no confirmed setting at a negligible teacher "
                f"cost reaches it, under any threat model or attacker measured.")
    where = "; ".join(f"{r.task} ({r.teacher_family}), {setting_words(r)}, under {r.attacker}"
                      + (f", {EXPOSED_NOTE}{against_normalised(s, r)}" if r.placement == "exposed" else "")
                      + ("" if _informed(r) == "-" else f"; against the strongest attacker who knows the defense: "
                                                         f"{_informed(r)} dB")
                      for r in hits)
    return f"**The paper's headline ({HEADLINE}) holds at**: {where}."


def settings_table(s: pd.DataFrame, bound: bool = True, steps: bool = False, student: bool = False) -> str:
    """Settings as rows: teacher cost, student change beside the noise floor, the bound (and with
    `steps` the student budget, for the budget curve's rows; with `student` the student)."""
    head = (["setting", "attacker"] + (["student"] if student else []) + (["student steps"] if steps else []) +
            ["seeds", "teacher dPSNR / dSSIM", "teacher PSNR to its clean answer (dB)", "student dPSNR (dB)",
             "student SSIM drop", "student dPSNR to the teacher (dB)", "noise floor", "effect",
             "clean student vs input"] + (["output-KD bound (dB)"] if bound else []))
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in s.itertuples():
        cells = [setting_words(r), r.attacker] + ([r.student] if student else []) + (
                 [str(r.budget)] if steps else []) + [
                 str(r.seeds), f"{r.t_dpsnr:+.2f} / {r.t_dssim:+.4f}", _to_teacher(r.t_fidelity_psnr).lstrip("+"),
                 delta_text(r), f"{r.ssim_drop_pct:.1f} %", _to_teacher(r.s_fidelity_dpsnr), floor_text(r.noise_floor),
                 _effect(r), f"{r.clean_student_gain:+.2f} dB" + ("" if r.learned else " (NOT learned)")]
        lines.append("| " + " | ".join(cells + ([_bound(r)] if bound else [])) + " |")
    return "\n".join(lines)


def budget_rows(tt: pd.DataFrame, longer: pd.DataFrame) -> pd.DataFrame:
    """The budget curve's settings at every budget, and the quick students the field stage trained at its longer
    budget (`longer`: its lines with every seed of the stage), which extend the curve of their setting and attacker
    or, where the stage's pick is another, stand on their own (each line's 'curve' names its setting and
    attacker)."""
    curve = pd.concat([tt[tt.stage == "budget"], longer[longer.seeds >= field.SEEDS]], ignore_index=True)
    return curve.assign(curve=[f"{setting_words(r)} / {r.attacker}" for r in curve.itertuples()])


def long_quick_lines(lines: pd.DataFrame) -> pd.DataFrame:
    """The field stage's quick students (the budget curve extended) among its summary lines (findings.field_lines)."""
    return lines[~lines.student.str.startswith("field")]


def teacher_section(tt: pd.DataFrame, raw: pd.DataFrame, costs: pd.DataFrame | None, longer: pd.DataFrame,
                    out: Path) -> str:
    teacher, family = tt.teacher.iloc[0], tt.teacher_family.iloc[0]
    stem = file_stem(teacher)
    tradeoff(tt, f"{teacher} ({family})", out / f"tradeoff_{stem}.png")
    stages = ", ".join(f"`{layer}`" for layer in dict.fromkeys(raw[~raw.layer.str.contains("+", regex=False)].layer))
    grid = ("" if costs is None else f" The in-line grid: {len(costs)} settings costed by teacher passes alone, "
            f"{int(negligible(costs.t_dpsnr, costs.t_dssim).sum())} of them at a negligible cost.")
    floor = floor_text(tt.noise_floor.iloc[0], " dB")
    parts = [f"### {teacher}: {family}\n\nSeeds {sorted(raw.seed.unique().tolist())}, {len(raw)} students taught by "
             f"a defended teacher (each beside its clean twin), noise floor {floor}; hooked "
             f"stages {stages}.{grid}\n\n![trade-off](tradeoff_{stem}.png)\n"]
    sure = confirmed(tt[tt.stage == "screen"])
    if not sure.empty:
        edges = pd.concat([frontier(grp) for _, grp in sure.groupby("attacker", sort=False)])
        parts.append(f"#### Frontier per attacker (confirmed with every seed)\n\n{settings_table(edges)}\n")
    for stage, title, bound in (("attackers", "The best in-line and exposed settings under every attacker", True),
                                ("baselines", "Baselines at the in-line setting's served-output distortion", False)):
        part = tt[tt.stage == stage]
        if not part.empty:
            parts.append(f"#### {title}\n\n{settings_table(part, bound)}\n")
    curve = budget_rows(tt, longer)
    if not curve.empty:
        budget_curve(curve, f"{teacher} ({family})", out / f"budget_{stem}.png")
        parts.append(f"#### Budget curve\n\n![budget curve](budget_{stem}.png)\n\n"
                     f"{settings_table(curve.sort_values(['curve', 'budget']), bound=False, steps=True)}\n")
    return "\n".join(parts)


def measured_verdicts(out: Path) -> str:
    """The answer table and its sentence from the last search, as markdown (the About tab shows them)."""
    path = out / "summary.csv"
    if not path.exists():
        return "No search has been run yet: `python -m app.experiments`."
    s = pd.read_csv(path)
    return f"{answer_words(s)}\n\n{answer_table(s)}"


def theft_section(values: pd.DataFrame) -> str:
    """What stealing is worth, from the no-theft rows beside the sweep (empty before the stage ran)."""
    if values.empty:
        return ""
    return ("## What stealing is worth\n\nThe degradation model of every task is public and the attacker owns clean "
            "images, so a thief can train the same student without any teacher: fitted, with the same queries, "
            "initial weights, batch order and budget, to the clean patches it degraded (`app.attack.distill."
            "no_theft`; the task's own attacker, every seed). The value of theft is the clean-taught student's gain "
            "over that no-theft student, per seed (mean ± std). A defense protects something the thief could not "
            "have had alone only where its defended-taught student falls below the no-theft one: the last columns "
            "give that difference for the answer table's pick of each threat model (negative: below).\n\n"
            f"{theft_table(values)}\n")


def informed_table(lines: pd.DataFrame) -> str:
    """Per teacher and setting: each informed attacker's student change beside the searched attacker's largest."""
    head = ["task", "teacher", "setting", "searched attacker with the largest drop", "its student dPSNR (dB)",
            "informed attacker", "seeds", "student dPSNR (dB)", "student SSIM drop", "noise floor (dB)", "effect"]
    out = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in lines.itertuples():
        searched = "-" if pd.isna(r.searched_dpsnr) else delta_text(pd.Series(
            dict(s_dpsnr=r.searched_dpsnr, s_dpsnr_std=r.searched_dpsnr_std)))
        out.append(f"| {r.task} | {r.teacher_family} | {setting_words(r)} | {r.searched_attacker} | {searched} | "
                   f"{r.attacker} | {r.seeds} | {delta_text(r)} | {r.ssim_drop_pct:.1f} % | "
                   f"{floor_text(r.noise_floor)} | {_effect(r)} |")
    return "\n".join(out)


def informed_section(lines: pd.DataFrame) -> str:
    """The attackers who know the defense (the informed stage's summary lines, findings.informed_lines), at the
    settings the search found (empty before the stage ran)."""
    if lines.empty:
        return ""
    return ("## Attackers who know the defense\n\nAt every exposed setting whose drop the search found beyond the "
            "noise floor, and every in-line setting on a confirmed frontier (the task's own student and budget, "
            f"the first {informed.SEEDS} seeds, each student beside its clean twin): the ASVP-aware attacker puts each "
            "exposed map's amplified head singular values back onto its tail's trend before an L1 match (no "
            "knowledge of k or a), the affinity attacker matches which positions go together, not the maps "
            "(`app.attack.informed`). Judged by the search's noise floor. The answer table's 'strongest informed "
            "attacker' column is, at its pick, the one of these whose students lose least.\n\n"
            f"{informed_left_words(strongest_informed(lines))}\n\n{informed_table(lines)}\n")


def informed_left_words(strongest: pd.DataFrame) -> str:
    """Per placement, what the informed attacker each setting withstands worst (findings.strongest_informed) left
    across every setting it met: drops and gains beyond the floor, the largest drop, and what the teacher itself
    pays where a drop is left (in-line, the served output carries it: no attacker can undo that)."""
    words = []
    for placement, g in strongest.groupby("placement"):  # exposed first, the stage's own question
        dropped = g.apply(field.damaged, axis=1)
        drops, gains = g[dropped], g[g.effect & ~dropped]
        inline = placement == "inline"
        counted = f"{len(g)} setting{'s' * (len(g) != 1)}"
        said = f"{'in-line' if inline else placement}, {counted}: a drop beyond the floor left at {len(drops)}"
        if len(drops):
            worst = drops.loc[drops.s_dpsnr.idxmin()]
            paid = f"; each costs the served teacher {-drops.t_dpsnr.max():.2f} dB or more" if inline else ""
            said += f" (the largest {delta_text(worst)} dB, {worst.teacher_family} at {setting_words(worst)}{paid})"
        words.append(f"{said}, a gain beyond it at {len(gains)}")
    if not words:
        return f"No setting has met an informed attacker with {MIN_SEEDS} seeds yet."
    return (f"Over every setting this stage met with at least {MIN_SEEDS} seeds, against the informed attacker "
            "each withstands worst: " + "; ".join(words) + ".")


def field_section(lines: pd.DataFrame) -> str:
    """The field stage (its summary lines, findings.field_lines): each teacher's best in-line and exposed settings
    against a field student and the quick one at the long budget (empty before the stage ran)."""
    if lines.empty:
        return ""
    parts = [f"## A thief who trains as the field does\n\nEach teacher's best in-line setting under output KD and "
             f"best exposed setting under feature KD (the answer table's picks, each with the attacker it was found "
             f"with) where the quick student's drop there is an effect, the {field.SETTINGS} largest drops in noise "
             f"floors (fewer settings before fewer seeds, to fit about 12 hours of two cores), taught to a "
             f"field student (`app.attack.field`: a small Real-ESRGAN Compact for SR at the attacker's learning rate, "
             f"a small NAFNet for the rest at NAFNet's own, {NAFNET_LR:g}) and to the quick student, both for "
             f"{FIELD_STEPS} steps, the first {field.SEEDS} seeds, each beside its clean twin, the largest drop first; "
             f"judged by the search's noise floor. The quick students extend their teacher's budget curve (its "
             f"section below).\n"]
    for (task, family), tt in lines.groupby(["task", "teacher_family"], sort=False):
        parts.append(f"### {task}: {family}\n\n{settings_table(tt, bound=False, steps=True, student=True)}\n")
    return "\n".join(parts)


def _stage_rows(out: Path, kind: str) -> pd.DataFrame:
    """The rows of one of the search's other stages (notheft_*.csv, informed_*.csv), teacher by teacher."""
    files = sorted(out.glob(f"{kind}_*.csv"), key=lambda p: teacher_order(p.stem.split("_", 1)[1]))
    return pd.concat([pd.read_csv(p) for p in files], ignore_index=True) if files else pd.DataFrame()


def write_report(out: Path) -> None:
    """Rebuild RESULTS.md, summary.csv, defaults.json and the figures from every sweep_<teacher>.csv and the
    stages' files beside them."""
    files = sorted(out.glob("sweep_*.csv"), key=lambda p: teacher_order(p.stem.removeprefix("sweep_")))
    rows = pd.concat([pd.read_csv(p) for p in files], ignore_index=True)  # per task, our U-Net first
    s, free, aware = summarise(rows), _stage_rows(out, notheft.KIND), _stage_rows(out, informed.KIND)
    long = _stage_rows(out, field.KIND)
    values = theft_values(rows, free, s) if not free.empty else pd.DataFrame()
    # both stages judged by the search's noise floors alone: their lines made once, read by the table and sections
    aware_lines, long_lines = informed_lines(s, aware), field_lines(s, long)
    s = with_field(with_informed(with_theft(s, values), aware_lines), long_lines)
    s.to_csv(out / "summary.csv", index=False)
    (out / "defaults.json").write_text(json.dumps(defaults(s), indent=2))
    parts = ["# ASVP Lab: does the defense stop distillation?\n\nGenerated by `python -m app.experiments` from "
             "every sweep_*.csv beside it (`--tasks NAME` or `--teachers NAME` re-runs part of the bundled teachers' "
             "search, `--teacher SOURCE --task NAME` searches one's own). Deltas are "
             "defended minus clean, each student beside its clean-taught twin (same seed, queries, batch order and "
             "budget); the spread is the std over seeds. A setting counts only when its clean-taught students "
             "beat the degraded input, and a drop is an effect only beyond the teacher's noise floor (the spread "
             "of its clean-taught students across seeds) and beyond its own spread. Students run single-threaded "
             "(`--threads 1`): a rerun on the same kind of CPU matches bit for bit.\n",
             f"## The answer\n\n{answer_words(s)}\n\nPer task, teacher and threat model, the confirmed setting "
             f"with the largest student drop among those costing the teacher at most a negligible amount. "
             f"In-line: the served output carries the perturbation; exposed: only the features handed out do "
             f"({EXPOSED_NOTE}). Students are scored against the ground truth where the clean teacher beats its "
             f"input there; a teacher that does not (a GAN teacher, made to look sharp rather than close) is scored "
             f"by fidelity, PSNR/SSIM to its clean answer, which is what a thief copies: then the clean student's "
             f"gain over the input and the noise floor are fidelities too. The student's change in PSNR to the "
             f"teacher is shown beside either. The value of theft is the clean-taught student's gain over one that "
             f"never asked the teacher (the next section); the last columns give what is left of the drop against "
             f"the strongest attacker who knows the defense and for a field student trained {FIELD_STEPS} steps "
             f"(their sections below; '-' where the stage has yet to measure it: the field stage takes the "
             f"{field.SETTINGS} largest drops that are effects, in noise floors).\n\n{answer_table(s)}\n",
             theft_section(values),
             informed_section(aware_lines),
             field_section(long_lines),
             f"## The output-KD bound\n\n{DERIVATION}\n\nEach teacher's figure draws the bound at its in-line "
             f"frontier (left) and plots every in-line student under output KD against its bound (right).\n"]
    longer = long_quick_lines(long_lines)
    for task, ts in s.groupby("task", sort=False):
        parts.append(f"## {task}\n")
        for teacher, tt in ts.groupby("teacher", sort=False):
            costs = out / f"costs_{file_stem(teacher)}.csv"
            parts.append(teacher_section(tt, rows[rows.teacher == teacher],
                                         pd.read_csv(costs) if costs.exists() else None,
                                         longer[longer.teacher == teacher], out))
    (out / "RESULTS.md").write_text("\n".join(parts))
