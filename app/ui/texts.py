"""The Lab's words: teacher facts, captions, the Distill table and the verdict with its why."""
from __future__ import annotations

import math

from app.attack.distill import Attack
from app.defense.setting import Setting
from app.devices import device_of
from app.lab import presets, scenes, verdicts
from app.study import thresholds
from app.teachers import sessions


def layer_choices(layers) -> list[tuple[str, str]]:
    """Dropdown entries: each hookable layer with its map's shape relative to the input (H x W)."""
    def side(scale, n):
        return n if scale == 1 else f"{scale.numerator}{n}" if scale > 1 else f"{n}/{scale.denominator}"

    return [(f"{f.name} · {f.channels} x {side(f.scale, 'H')} x {side(f.scale, 'W')}", f.name) for f in layers]


def teacher_facts(teacher: sessions.SessionTeacher, preset: presets.Preset, device_note: str = "") -> str:
    loaded = teacher.loaded
    lines = [f"**{loaded.architecture}** ({loaded.family.title}, licence {loaded.family.licence}), "
             f"{loaded.params:,} parameters, x{loaded.scale} — {loaded.origin}; it and its Distill students run on "
             f"{device_of(teacher.model).type.upper()}"]
    lines += [f"⚠️ {warning}" for warning in (loaded.warning, device_note) if warning]
    if (cost := loaded.cost) and cost.serves_less:
        lines.append(f"Measured before it served: a look at the largest upload would take about "
                     f"{cost.upload_look_s:.0f} s here, so it serves images up to {teacher.max_side} px (a look "
                     f"at {cost.side} px in takes about {cost.look_s:.1f} s and holds {cost.peak_gb:.2f} GB); "
                     f"uploads are downscaled to that.")
    elif cost:
        lines.append(f"Measured before it served: a look at the largest upload ({cost.side} px in) takes about "
                     f"{cost.look_s:.1f} s here and holds {cost.peak_gb:.2f} GB.")
    lines.append(f"Defense defaults: {preset.source}; {len(teacher.layers)} hookable layers.")
    return "\n\n".join(lines + [loaded.quality])


def caption(name: str, q: scenes.Quality | None) -> str:
    return f"{name}: no reference" if q is None else f"{name}: {q.psnr:.2f} dB / SSIM {q.ssim:.4f}"


def perturbation_caption(span: float) -> str:
    """The perturbation panel's scale, or that there is nothing to scale."""
    return f"shown x{1 / span:.0f}, grey = 0" if span else "no served change (grey = 0 everywhere)"


def score_rows(s: scenes.DuelScores) -> list[list[str]]:
    """The Distill table: PSNR, SSIM and the change against each row's twin (the no-theft student's: the
    clean-taught one), on the ground truth; then PSNR and SSIM to the clean teacher's answer (fidelity: what
    a thief copies)."""
    f, alone = s.fidelity, "student (no teacher: stole nothing)"
    entries = [("input", s.input, None, f.input), ("teacher", s.teacher, None, None),
               ("teacher + ASVP", s.defended_teacher, s.teacher, f.defended_teacher),
               ("student (clean teacher)", s.clean_student, None, f.clean_student),
               ("student (defended teacher)", s.defended_student, s.clean_student, f.defended_student)]
    rows = []
    for name, q, twin, close in entries + ([(alone, s.no_theft, s.clean_student, f.no_theft)] if s.no_theft_ready
                                           else []):
        delta = f"{q.psnr - twin.psnr:+.2f} dB / {q.ssim - twin.ssim:+.4f}" if q and twin else ""
        rows.append([name, "no reference" if q is None else f"{q.psnr:.2f}",
                     "no reference" if q is None else f"{q.ssim:.4f}", delta,
                     "reference" if close is None else f"{close.psnr:.2f}",
                     "reference" if close is None else f"{close.ssim:.4f}"])
    if not s.no_theft_ready:
        rows.append([alone, "still training in the background: the next click shows it", "", "", "", ""])
    return rows


def verdict_text(v: verdicts.Verdict) -> str:
    """The lab's verdict in words."""
    if v.outcome == "no reference":
        return "No ground truth for this image, so no verdict: compare the students by eye."
    if v.outcome == "not learned":
        beat = ("it does not beat the degraded input" if v.measure == "ground truth" else
                "it is no closer to the teacher's answer than the degraded input is")
        return f"The undefended student did not learn ({beat}): no verdict. Raise the student budget."
    if abs(v.teacher_cost) <= thresholds.UNCHANGED_DB:
        cost = "The teacher's PSNR did not change."
    else:
        cost = (f"The teacher's PSNR {'fell' if v.teacher_cost > 0 else 'rose'} by {abs(v.teacher_cost):.2f} dB "
                f"and its SSIM changed by {v.teacher_ssim_change:+.4f}.")
    if v.measure == "fidelity":
        cost += (" This teacher does not beat its input on the ground truth (a GAN teacher aims at sharpness), "
                 "so the students are measured by fidelity: PSNR to the clean teacher's answer.")
    return {"costly": f"The defended-taught student lost {v.student_drop:.2f} dB, but at a price: {cost} "
                      "The defense damages the output it is meant to protect.",
            "protects": f"ASVP protects here: the defended-taught student lost {v.student_drop:.2f} dB. {cost}",
            "weak": f"Weak protection: the defended-taught student lost only {v.student_drop:.2f} dB. {cost}",
            "none": f"No protection: the defended-taught student is as good ({-v.student_drop:+.2f} dB). {cost}",
            }[v.outcome]


def why_text(v: verdicts.Verdict, defense: Setting, attack: Attack, floor: float | None) -> str:
    """Why the verdict came out as it did, from the lab's own measurements (empty without one)."""
    if v.outcome in ("no reference", "not learned"):
        return ""
    if defense.placement == "exposed" and not attack.reads_features:
        return (f"Exposed features reach only a feature-distilling attacker: {attack.label} distils the served "
                "outputs, which exposed placement leaves untouched, so both students learned from the same answers.")
    if defense.placement == "exposed":
        parts = [f"The served output is untouched; only the hooked features, which this attacker ({attack.label}) "
                 "reads, were perturbed."]
    elif v.outcome == "costly":
        parts = [f"The served answers themselves lost {v.teacher_cost:.2f} dB: a student copies what it is served, "
                 "so its drop is the teacher's damage passed on."]
    else:
        parts = [] if math.isnan(v.bound) else [
            f"By the output-KD bound, a least-squares student could lose at most {-v.bound:.2f} dB from how far the "
            f"teacher's answers moved on this image; this one lost {v.student_drop:.2f} dB."]
    if floor is not None:
        within = abs(v.student_drop) <= floor
        parts.append(f"That is {'within' if within else 'beyond'} the noise floor of {floor:.2f} dB the search "
                     f"measured for this task and teacher (the spread of clean-taught students across seeds)"
                     + (": another seed may well reverse it." if within else "."))
    return " ".join(parts)


def verdict_markdown(v: verdicts.Verdict, defense: Setting, attack: Attack, floor: float | None,
                     asked: int | None = None) -> str:
    """The verdict, why, and where a slow teacher answered fewer than the `asked` queries, that."""
    why = why_text(v, defense, attack, floor)
    fewer = asked is not None and attack.queries < asked
    return (f"**Verdict.** {verdict_text(v)}" + (f"\n\n**Why.** {why}" if why else "")
            + (f"\n\n**Fewer queries.** This teacher is slow here: both students learned from {attack.queries} of "
               f"the attacker's {asked} queries, so that a click ends in about half a minute; a thief who asks all "
               f"of them learns more." if fewer else ""))
