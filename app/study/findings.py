"""From sweep rows to findings: one line per setting (mean and spread over seeds), the noise floor of
each teacher, threat models, the best setting per threat model, and the defaults the app starts from.

The report writes these down and draws them; the app reads defaults.json. A delta is called an
effect only beyond its teacher's noise floor (the spread between clean-taught students of different
seeds with the same attacker, hooked layer and budget, pooled over every such group) and beyond its
own spread over seeds.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from app.attack.attackers import ATTACKERS, attack_for
from app.attack.distill import Attack
from app.data.tasks import get_task
from app.defense.bound import bound_db
from app.defense.setting import Setting
from app.study.thresholds import MEASURES, negligible, reaches_headline


SETTING = ["task", "teacher", "teacher_family", "stage", "defense", "attack", "attacker", "budget", "student",
           "layer_role", "layout", "layer", "k", "a", "tau", "placement", "directions", "noise_sigma"]
THREATS = ("in-line, output KD", "in-line, feature KD", "exposed, feature KD")
EXPOSED_NOTE = ("only against an attacker who reads the exposed features: one that drops them and distils the "
                "outputs alone gets a student bit-identical to the clean-taught one")
MIN_SEEDS = 3  # a finding needs its spread: settings measured with fewer seeds only screen
FIDELITY = tuple(f"{who}_fidelity_{m}" for who in ("input", "teacher", "student_clean", "student")
                 for m in ("psnr", "ssim"))  # a row's scores against the clean teacher's answer


def summarise(df: pd.DataFrame, floors: dict[str, float] | None = None) -> pd.DataFrame:
    """One line per setting: deltas as mean and std over seeds, validity, the output-KD bound and
    the threat model, each drop judged by its teacher's noise floor (`floors`: the search's, for rows of
    another stage; default: from these rows)."""
    df = df.copy()
    if "attacker" not in df:  # a sweep from before the search named only the kind (its feature KD: L1 x0.1)
        named = {"feature": "feature L1 x0.1", "adaptive": "adaptive"}
        df["attacker"] = [named.get(kind) or attack_for(task).label for kind, task in zip(df.attack, df.task)]
    for column in ("served_rms", "student_clean_rms", "student_rms") + FIDELITY:
        if column not in df:
            df[column] = np.nan
    df["tau"] = df["tau"].astype(object).fillna("-")
    df["t_dpsnr"] = df.teacher_psnr - df.teacher_clean_psnr
    df["t_dssim"] = df.teacher_ssim - df.teacher_clean_ssim
    df["measure"] = measures(df)
    scored = _scored(df)
    df["s_dpsnr"] = scored.student_psnr - scored.student_clean_psnr
    df["s_dssim"] = scored.student_ssim - scored.student_clean_ssim
    df["ssim_drop_pct"] = -100 * df.s_dssim / scored.student_clean_ssim
    df["clean_student_gain"] = scored.student_clean_psnr - scored.input_psnr
    df["learned"] = df.clean_student_gain > 0
    df["s_fidelity_dpsnr"] = df.student_fidelity_psnr - df.student_clean_fidelity_psnr
    g = df.groupby(SETTING, sort=False, dropna=False)
    out = g.agg(seeds=("seed", "count"), measure=("measure", "first"), t_dpsnr=("t_dpsnr", "mean"),
                t_dssim=("t_dssim", "mean"), t_fidelity_psnr=("teacher_fidelity_psnr", "mean"),
                s_dpsnr=("s_dpsnr", "mean"), s_dpsnr_std=("s_dpsnr", "std"), s_dssim=("s_dssim", "mean"),
                s_dssim_std=("s_dssim", "std"), ssim_drop_pct=("ssim_drop_pct", "mean"),
                s_fidelity_dpsnr=("s_fidelity_dpsnr", "mean"), s_fidelity_dpsnr_std=("s_fidelity_dpsnr", "std"),
                clean_student_gain=("clean_student_gain", "mean"),
                learned=("learned", "all"), served_rms=("served_rms", "mean"),
                student_clean_rms=("student_clean_rms", "mean"),
                s_drms=("student_rms", "mean")).reset_index()
    out["s_drms"] -= out.student_clean_rms
    out["bound_db"] = [bound_db(e, d) if e > 0 else np.nan for e, d in zip(out.student_clean_rms, out.served_rms)]
    out["protection"] = -out.s_dpsnr / (-out.t_dpsnr).clip(lower=0.1)
    out["threat"] = threat(out)
    floors = floors or noise_floors(df.assign(student_clean_psnr=scored.student_clean_psnr))  # each row's measure
    out["noise_floor"] = out.teacher.map(floors)
    out["beyond_floor"] = out.s_dpsnr.abs() > out.noise_floor
    out["effect"] = (out.beyond_floor & (out.s_dpsnr.abs() > out.s_dpsnr_std.fillna(0))
                     & (out.seeds >= MIN_SEEDS))  # a screen, or a row still landing, has no spread to judge by
    return out


def measures(rows: pd.DataFrame) -> pd.Series:
    """What each row's students are scored against: the ground truth where the clean teacher beats its input
    there; otherwise (a GAN teacher, made to look sharp rather than close) the clean teacher's answer, which is
    what a thief copies, where the row has it."""
    measured = rows.get("student_clean_fidelity_psnr", pd.Series(np.nan, index=rows.index)).notna()
    fidelity = (rows.teacher_clean_psnr <= rows.input_psnr) & measured
    return pd.Series(np.where(fidelity, MEASURES[1], MEASURES[0]), index=rows.index)


def _scored(rows: pd.DataFrame) -> pd.DataFrame:
    """The input's and the students' PSNR/SSIM under each row's measure, by their ground-truth column names."""
    fidelity = rows.measure == MEASURES[1]
    return pd.DataFrame({f"{who}_{m}": rows[f"{who}_fidelity_{m}"].where(fidelity, rows[f"{who}_{m}"])
                         for who in ("input", "student_clean", "student") for m in ("psnr", "ssim")})


def theft_values(rows: pd.DataFrame, free: pd.DataFrame, s: pd.DataFrame) -> pd.DataFrame:
    """Per teacher, under its measure: the no-theft student's gain over the input, the clean-taught student's
    (the task's own attacker at the sweep's budget, same seeds), what theft is worth (their difference per seed,
    mean and std), and per threat model where the answer table's pick leaves the defended-taught student
    against the no-theft one (below zero: the defense took more than the theft gave)."""
    picks, out = best(s, cheap=True).set_index(["teacher", "threat"]), []
    for teacher, nt in free.groupby("teacher", sort=False):
        tr = rows[rows.teacher == teacher]
        if tr.empty:
            continue
        measure = measures(tr).iloc[0]
        column = (lambda who: f"{who}_psnr") if measure == MEASURES[0] else (lambda who: f"{who}_fidelity_psnr")
        twins = tr[(tr.attacker == nt.attacker.iloc[0]) & (tr.budget == nt.budget.iloc[0])]
        clean = twins.drop_duplicates("clean_key").groupby("seed")[column("student_clean")].mean()
        alone = nt.set_index("seed")[column("no_theft")]
        value = (clean - alone).dropna()
        base = tr[column("input")].mean()
        entry = dict(task=tr.task.iloc[0], teacher=teacher, teacher_family=tr.teacher_family.iloc[0], measure=measure,
                     seeds=len(value), no_theft_gain=alone.mean() - base, clean_gain=clean[value.index].mean() - base,
                     theft_value=value.mean(), theft_value_std=value.std())
        for threat_model in THREATS:
            r = picks.loc[(teacher, threat_model)] if (teacher, threat_model) in picks.index else None
            entry[threat_model] = (np.nan if r is None else
                                   r.clean_student_gain + r.s_dpsnr - entry["no_theft_gain"])
        out.append(entry)
    return pd.DataFrame(out)


def with_theft(s: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    """`s` with each teacher's value of theft (`theft_values`) on its lines; empty for a teacher without one."""
    columns = ["theft_value", "theft_value_std"]
    if values.empty:
        return s.assign(**{c: np.nan for c in columns})
    return s.merge(values[["teacher"] + columns], on="teacher", how="left")


def stage_lines(s: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of a stage beside the search (informed, field) as summary lines judged by the search's noise
    floors (`s`), each with its setting in words (`setting`) to meet the search's lines by."""
    lines = summarise(rows, floors=s.groupby("teacher", sort=False).noise_floor.first().to_dict())
    return lines.assign(setting=_setting_keys(lines))


def informed_lines(s: pd.DataFrame, aware: pd.DataFrame) -> pd.DataFrame:
    """The informed stage's rows `aware` as summary lines (`stage_lines`), each beside the searched attacker
    whose students lost most at the same setting and budget; an empty frame before the stage ran."""
    if aware.empty:
        return pd.DataFrame()
    searched = s[s.attacker.isin(ATTACKERS)].assign(setting=_setting_keys(s)).sort_values("s_dpsnr")
    naive = searched.drop_duplicates(["teacher", "budget", "setting"]).rename(columns={
        "attacker": "searched_attacker", "s_dpsnr": "searched_dpsnr", "s_dpsnr_std": "searched_dpsnr_std"})
    return stage_lines(s, aware).merge(naive[["teacher", "budget", "setting", "searched_attacker", "searched_dpsnr",
                                              "searched_dpsnr_std"]], on=["teacher", "budget", "setting"], how="left")


def with_informed(s: pd.DataFrame, lines: pd.DataFrame) -> pd.DataFrame:
    """`s` with, on each line, the informed attacker its setting withstands worst among the informed stage's
    summary lines `lines` (`informed_lines`, measured with MIN_SEEDS or more): the one whose students lose least,
    its mean change, spread and whether that is an effect; empty where no informed attacker met the setting."""
    columns = ["informed_attacker", "informed_dpsnr", "informed_dpsnr_std", "informed_effect"]
    if lines.empty:
        return s.assign(**{c: np.nan for c in columns})
    strongest = strongest_informed(lines).rename(columns={"attacker": columns[0], "s_dpsnr": columns[1],
                                                          "s_dpsnr_std": columns[2], "effect": columns[3]})
    return _joined(s, strongest, ["teacher", "budget", "setting"], columns)


def strongest_informed(lines: pd.DataFrame) -> pd.DataFrame:
    """Per teacher, setting and budget of the informed stage's summary lines `lines` (`informed_lines`), the
    informed attacker measured with MIN_SEEDS or more whose students lose least: what the defense has left there."""
    return lines[lines.seeds >= MIN_SEEDS].sort_values("s_dpsnr").drop_duplicates(
        ["teacher", "budget", "setting"], keep="last")  # the largest s_dpsnr, with its spread


def field_lines(s: pd.DataFrame, long: pd.DataFrame) -> pd.DataFrame:
    """The field stage's rows `long` (field and long quick students) as summary lines (`stage_lines`), an empty
    frame with the columns readers select by before the stage ran."""
    return stage_lines(s, long) if not long.empty else pd.DataFrame(columns=["teacher", "student", "seeds"])


def with_field(s: pd.DataFrame, lines: pd.DataFrame) -> pd.DataFrame:
    """`s` with, on each line, what the field stage's summary lines `lines` (`field_lines`) measured for a field
    student at its setting and attacker (`field_steps` steps, MIN_SEEDS or more): its mean change, spread, whether
    that is an effect and whether its clean twins learned (else the drop does not count); empty elsewhere."""
    columns = ["field_steps", "field_dpsnr", "field_dpsnr_std", "field_effect", "field_learned"]
    fields = lines[lines.student.str.startswith("field") & (lines.seeds >= MIN_SEEDS)]
    if fields.empty:
        return s.assign(**{c: np.nan for c in columns})
    return _joined(s, fields.rename(columns={"budget": columns[0], "s_dpsnr": columns[1], "s_dpsnr_std": columns[2],
                                             "effect": columns[3], "learned": columns[4]}),
                   ["teacher", "attacker", "setting"], columns)


def _joined(s: pd.DataFrame, found: pd.DataFrame, on: list[str], columns: list[str]) -> pd.DataFrame:
    """`s` with `columns` of the lines `found` that meet each of its lines on `on` (one at most)."""
    return (s.assign(setting=_setting_keys(s)).merge(found[on + columns], on=on, how="left")
            .drop(columns="setting"))


def _setting_keys(s: pd.DataFrame) -> list[str]:
    return [setting_words(r) for r in s.itertuples()]


def threat(s: pd.DataFrame) -> pd.Series:
    """Where the perturbation lives and what the attacker reads: in-line (the served output changes)
    or exposed (only the features handed out change), under output or feature KD."""
    reads = s.attack.map(lambda kind: Attack(kind=kind).reads_features)
    return pd.Series(np.where(s.placement == "exposed", np.where(reads, THREATS[2], "exposed, output KD"),
                              np.where(reads, THREATS[1], THREATS[0])), index=s.index)


def noise_floors(rows: pd.DataFrame) -> dict[str, float]:
    """Per teacher, the pooled std over seeds of its clean-taught students' PSNR (groups of one
    attacker, hooked layer and budget, measured with at least MIN_SEEDS seeds)."""
    clean = rows.drop_duplicates(["teacher", "clean_key"]) if "clean_key" in rows else rows
    floors = {}
    for teacher, tr in clean.groupby("teacher", sort=False):
        groups = tr.groupby(["attacker", "layer", "budget"], dropna=False).student_clean_psnr
        variances = [v.var() for _, v in groups if v.count() >= MIN_SEEDS]
        floors[teacher] = float(np.sqrt(np.mean(variances))) if variances else np.nan
    return floors


def confirmed(s: pd.DataFrame) -> pd.DataFrame:
    """ASVP settings measured with enough seeds to carry a spread, whose clean students learned
    (the budget curve's other budgets excluded: they answer their own question)."""
    return s[(s.defense == "asvp") & (s.seeds >= MIN_SEEDS) & s.learned & (s.stage != "budget")]


def best(s: pd.DataFrame, cheap: bool) -> pd.DataFrame:
    """Per task, teacher and threat model, the confirmed setting with the largest student drop (at
    a negligible teacher cost when `cheap`)."""
    pool = confirmed(s)
    if cheap:
        pool = pool[negligible(pool.t_dpsnr, pool.t_dssim)]
    return pool.loc[pool.groupby(["task", "teacher", "threat"], sort=False).s_dpsnr.idxmin()]


def headline(r) -> bool:
    """The paper's headline, reached by a drop that is also beyond the noise floor."""
    return bool(reaches_headline(r.s_dpsnr, r.ssim_drop_pct) and r.effect)


def defaults(s: pd.DataFrame) -> dict[str, dict]:
    """Per bundled teacher, its noise floor and two settings the app can start from: the strongest at
    a negligible teacher cost and the strongest overall (largest confirmed student drop, any
    attacker), each with the attacker and the numbers it was measured with. Settings at one hooked
    layer only: the app hooks one."""
    sure = confirmed(s)
    one_layer = sure[~sure.layer.str.contains("+", regex=False)]
    out = {}
    for teacher, floor in s.groupby("teacher", sort=False).noise_floor.first().items():
        ts = one_layer[one_layer.teacher == teacher]
        picks = {"negligible": ts[negligible(ts.t_dpsnr, ts.t_dssim)], "strongest": ts}
        out[teacher] = ({} if pd.isna(floor) else {"noise_floor": _kept(floor)}) | {
            name: entry(pool.loc[pool.s_dpsnr.idxmin()]) for name, pool in picks.items() if not pool.empty}
    return out


def delta_text(r) -> str:
    """A student change with its spread over seeds (none with one seed)."""
    spread = "" if pd.isna(r.s_dpsnr_std) else f" ± {r.s_dpsnr_std:.2f}"
    return f"{r.s_dpsnr:+.2f}{spread}"


def floor_text(value: float, unit: str = "") -> str:
    """A noise floor, or why there is none yet (no group of clean students with enough seeds)."""
    return f"{value:.2f}{unit}" if np.isfinite(value) else f"n/a (< {MIN_SEEDS} seeds)"


def setting_words(r) -> str:
    """A summary line's setting in words."""
    if r.defense == "output-noise":
        return f"output noise sigma={r.noise_sigma:g}"
    tau = "" if Setting.from_row(r).tau is None else f", tau={Setting.from_row(r).tau:g}"
    dirs = "" if r.directions == "top" else f", {r.directions} directions"
    return f"{r.layout} @ {r.layer}, k={r.k}, a={r.a:g}{tau}, {r.placement}{dirs}"


def entry(r) -> dict:
    """A summary line as a setting to start from: the defense, its attacker and what it measured (and, where
    measured, what the strongest informed attacker and a field student left of its drop)."""
    return dict(defense=Setting.from_row(r).entry(),
                attacker=r.attacker, student_dpsnr=_kept(r.s_dpsnr), student_dpsnr_std=_kept(r.s_dpsnr_std),
                noise_floor=_kept(r.noise_floor), teacher_dpsnr=_kept(r.t_dpsnr), teacher_dssim=_kept(r.t_dssim),
                seeds=int(r.seeds), **_left_of(r))


def _kept(value: float) -> float:
    """A measure as defaults.json keeps it: to 4 decimals, so that the app's 2 show what the report's show (kept
    to 3, a floor of 0.1148 became 0.115, and the app said 0.12 where the report said 0.11)."""
    return round(float(value), 4)


def _left_of(r) -> dict:
    """A line's informed and field columns, where those stages measured its setting."""
    left = {}
    if pd.notna(getattr(r, "informed_dpsnr", np.nan)):
        left.update(informed_attacker=r.informed_attacker, informed_dpsnr=_kept(r.informed_dpsnr),
                    informed_dpsnr_std=_kept(r.informed_dpsnr_std))
    if pd.notna(getattr(r, "field_dpsnr", np.nan)):
        left.update(field_steps=int(r.field_steps), field_dpsnr=_kept(r.field_dpsnr),
                    field_dpsnr_std=_kept(r.field_dpsnr_std), field_learned=bool(r.field_learned))
    return left


def left_words(entry: dict) -> str:
    """What the strongest informed attacker and a field student left of a pick's drop, where those stages measured
    it ('' elsewhere): from its defaults.json entry (`entry`; a summary line's through `_left_of`)."""
    words = ""
    if "informed_dpsnr" in entry:
        words += (f"; against the strongest attacker who knows the defense ({entry['informed_attacker']}): "
                  f"{entry['informed_dpsnr']:+.2f} ± {entry['informed_dpsnr_std']:.2f} dB")
    if "field_dpsnr" in entry:
        unlearned = "" if entry["field_learned"] else ", its clean twin did not learn: no count"
        words += (f"; a field student of {entry['field_steps']} steps: {entry['field_dpsnr']:+.2f} ± "
                  f"{entry['field_dpsnr_std']:.2f} dB{unlearned}")
    return words


def scenarios(s: pd.DataFrame) -> list[tuple[str, int, str]]:
    """Three settings a class can load in one click, each as (title, summary line, what it shows):
    a defense whose student drop is the teacher's own damage, a drop inside the noise, and the
    largest drop at a negligible teacher cost the search confirmed (beyond the noise where any is)."""
    sure = confirmed(s)
    inline, cheap = sure[sure.placement == "inline"], sure[negligible(sure.t_dpsnr, sure.t_dssim)]
    paid = inline[(inline.s_dpsnr <= -1) & ~negligible(inline.t_dpsnr, inline.t_dssim)]
    noisy, strongest = cheap[~cheap.effect], cheap[cheap.effect] if cheap.effect.any() else cheap
    picks = [("It costs the teacher as much", paid, (paid.t_dpsnr - paid.s_dpsnr).abs(), _paid_words),
             ("A drop inside the noise", noisy, noisy.s_dpsnr, _noise_words),
             ("The strongest setting found", strongest, strongest.s_dpsnr, lambda r: _strongest_words(r, s))]
    return [(title, int(rank.idxmin()), words(pool.loc[rank.idxmin()])) for title, pool, rank, words in picks
            if not pool.empty]


def teacher_on_task(r) -> str:
    """A measured line's teacher and task in words ("SwinIR on super-resolution x2"), for the app."""
    return f"{r.teacher_family} on {get_task(r.task).title.lower()}"


def _paid_words(r) -> str:
    return (f"{teacher_on_task(r)}, {r.attacker}: the student loses {-r.s_dpsnr:.2f} dB, but the served "
            f"teacher loses {-r.t_dpsnr:.2f} dB. The student copies the damaged answers it is served.")


def _noise_words(r) -> str:
    return (f"{teacher_on_task(r)}, {r.attacker}: the student moves {r.s_dpsnr:+.2f} dB at a negligible "
            f"teacher cost, but its seeds spread {r.s_dpsnr_std:.2f} dB and clean-taught students alone spread "
            f"{r.noise_floor:.2f} dB: another seed can reverse it.")


def _strongest_words(r, s: pd.DataFrame) -> str:
    return (f"{teacher_on_task(r)}, {r.threat}, {r.attacker}: the largest confirmed student drop "
            f"{'beyond the noise ' if r.effect else ''}at a negligible teacher cost, {r.s_dpsnr:+.2f} ± "
            f"{r.s_dpsnr_std:.2f} dB (noise floor {r.noise_floor:.2f} dB){left_words(_left_of(r))}."
            + (f" The served output is untouched: this works {EXPOSED_NOTE}{against_normalised(s, r)}."
               if r.placement == "exposed" else ""))


def against_normalised(s: pd.DataFrame, r) -> str:
    """What the same setting did to the attackers who standardise the features before matching them
    (a scale blown up by the defense then has no say), where the search measured that."""
    normalising = [name for name, change in ATTACKERS.items() if change.get("normalise")]
    same = confirmed(s[(s.teacher == r.teacher) & s.attacker.isin(normalising)])
    found = [f"{x.attacker}, {delta_text(x)} dB" for x in same.itertuples() if setting_words(x) == setting_words(r)]
    if not found:
        return ""
    return f" (the same setting against an attacker who standardises the features first: {' and '.join(found)})"
