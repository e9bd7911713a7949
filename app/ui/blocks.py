"""The Gradio app: defend, distill and compare side by side. Knows app.lab.service, not torch internals."""
from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import gradio as gr
import pandas as pd
from PIL import Image

from app.attack import attackers
from app.attack.distill import Attack
from app.data.images import MAX_SIDE, load_rgb, to_uint8
from app.data.tasks import TASKS, get_task
from app.defense.bound import DERIVATION
from app.defense.setting import Setting
from app.devices import app_device, device_of
from app.lab import duels, looks, presets, scenes, verdicts
from app.lab.export import METRICS_HEADER, session_zip
from app.study import thresholds
from app.study.findings import entry, scenarios
from app.study.grid import K_GRID
from app.study.report import measured_verdicts
from app.teachers import registry, sessions
from app.ui import plots


ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"
EXAMPLES = [(t.examples[i % len(t.examples)], t) for i, t in enumerate(TASKS.values())]  # a CC0 photo per task
ABOUT = (Path(__file__).parent / "about.md").read_text()
MAX_BUDGET = 600  # student steps: a public Space must not let one click hold a worker for minutes
MAX_K = max(k for k, _ in K_GRID)  # the search's adaptive cap: every setting it measured fits the k slider
SWEEP_A = (1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 8.0)
# the page's style, passed to launch(): Markdown tables (the About tab's answer has 13 columns) break
# lines between words, never inside one ("deha-ze"), and scroll sideways where they cannot fit
CSS = (".prose table { display: block; overflow-x: auto; } "
       ".prose td, .prose th { overflow-wrap: normal; word-break: normal; }")


class UploadPath(gr.Image):
    """An image input that hands the raw upload path on when Gradio cannot decode it, so the
    lab's own loader answers with its clear message instead of a generic server error."""

    def get_block_name(self) -> str:
        return "image"  # rendered by Gradio's own image frontend

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except Exception:  # noqa: BLE001 - any decoding failure is reported by read_image
            return payload.path if payload is not None else None


def defense_from(k, a, layer, layout, adaptive, tau, placement) -> Setting:
    """The controls' setting, or a message saying what is wrong with it."""
    try:
        return Setting.from_controls(k, a, layer, layout, adaptive, tau, placement)
    except ValueError as e:
        raise gr.Error(f"Invalid defense setting: {e}") from None


def user_errors(fn):
    """Bad input becomes a short message in the UI and the API; the server keeps serving."""
    def message(e: Exception) -> gr.Error:
        return e if isinstance(e, gr.Error) else gr.Error(str(e).splitlines()[0] if str(e) else type(e).__name__)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except (ValueError, OSError) as e:  # TeacherLoadError is a ValueError
                raise message(e) from None
        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, OSError) as e:
            raise message(e) from None
    return call


def read_image(path):
    if not path:
        raise gr.Error("Pick an example or upload an image first.")
    try:
        return load_rgb(path, MAX_SIDE)
    except (OSError, ValueError, Image.DecompressionBombError) as e:  # not an image, corrupt, empty, too big
        raise gr.Error(f"Could not read the image ({type(e).__name__}): upload a PNG, JPEG or WebP photo.") from None


def layer_choices(layers) -> list[tuple[str, str]]:
    """Dropdown entries: each hookable layer with its map's shape relative to the input (H x W)."""
    def side(scale, n):
        return n if scale == 1 else f"{scale.numerator}{n}" if scale > 1 else f"{n}/{scale.denominator}"

    return [(f"{f.name} · {f.channels} x {side(f.scale, 'H')} x {side(f.scale, 'W')}", f.name) for f in layers]


def teacher_facts(teacher: sessions.SessionTeacher, preset: presets.Preset, device_note: str = "") -> str:
    loaded = teacher.loaded
    lines = [f"**{loaded.architecture}** ({loaded.family.title}, licence {loaded.family.licence}), {loaded.params:,} parameters, "
             f"x{loaded.scale} — {loaded.origin}; it and its Distill students run on "
             f"{device_of(teacher.model).type.upper()}"]
    lines += [f"⚠️ {warning}" for warning in (loaded.warning, device_note) if warning]
    lines.append(f"Defense defaults: {preset.source}; {len(teacher.layers)} hookable layers.")
    return "\n\n".join(lines + [loaded.quality])


def caption(name: str, q: scenes.Quality | None) -> str:
    return f"{name}: no reference" if q is None else f"{name}: {q.psnr:.2f} dB / SSIM {q.ssim:.4f}"


def perturbation_caption(span: float) -> str:
    """The perturbation panel's scale, or that there is nothing to scale."""
    return f"shown x{1 / span:.0f}, grey = 0" if span else "no served change (grey = 0 everywhere)"


def score_rows(s: scenes.DuelScores) -> list[list[str]]:
    """The Distill table: PSNR, SSIM and the change against each row's undefended twin."""
    rows = []
    for name, q, twin in (("input", s.input, None), ("teacher", s.teacher, None),
                          ("teacher + ASVP", s.defended_teacher, s.teacher),
                          ("student (clean teacher)", s.clean_student, None),
                          ("student (defended teacher)", s.defended_student, s.clean_student)):
        delta = f"{q.psnr - twin.psnr:+.2f} dB / {q.ssim - twin.ssim:+.4f}" if q and twin else ""
        rows.append([name, "no reference" if q is None else f"{q.psnr:.2f}",
                     "no reference" if q is None else f"{q.ssim:.4f}", delta])
    return rows


def verdict_text(v: verdicts.Verdict) -> str:
    """The lab's verdict in words."""
    if v.outcome == "no reference":
        return "No ground truth for this image, so no verdict: compare the students by eye."
    if v.outcome == "not learned":
        return ("The undefended student did not learn (it does not beat the degraded input): no verdict. "
                "Raise the student budget.")
    if abs(v.teacher_cost) <= thresholds.UNCHANGED_DB:
        cost = "The teacher's PSNR did not change."
    else:
        cost = (f"The teacher's PSNR {'fell' if v.teacher_cost > 0 else 'rose'} by {abs(v.teacher_cost):.2f} dB "
                f"and its SSIM changed by {v.teacher_ssim_change:+.4f}.")
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


def verdict_markdown(v: verdicts.Verdict, defense: Setting, attack: Attack, floor: float | None) -> str:
    why = why_text(v, defense, attack, floor)
    return f"**Verdict.** {verdict_text(v)}" + (f"\n\n**Why.** {why}" if why else "")


# the explorer's table, in words (summary.csv's column -> what it means)
COLUMNS = {"task": "task", "teacher_family": "family", "stage": "stage", "attacker": "attacker",
           "layer": "hooked layer", "layout": "layout", "k": "k", "a": "a", "tau": "tau", "placement": "placement",
           "seeds": "seeds", "t_dpsnr": "teacher ΔPSNR (dB)", "t_dssim": "teacher ΔSSIM",
           "s_dpsnr": "student ΔPSNR (dB)", "s_dpsnr_std": "student spread (dB)",
           "ssim_drop_pct": "student SSIM drop (%)", "noise_floor": "noise floor (dB)",
           "bound_db": "output-KD bound (dB)"}
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


def measured() -> pd.DataFrame:
    """The search's ASVP settings (results/summary.csv, one line each), empty before any search."""
    path = RESULTS / "summary.csv"
    s = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=[*COLUMNS, "defense", "threat", "teacher"])
    return s[s.defense == "asvp"]


def explore(tasks, families, attackers, placements):
    """The explorer's figure and table for the settings that pass every filter."""
    s = measured()
    shown = s[s.task.isin(tasks or []) & s.teacher_family.isin(families or []) & s.attacker.isin(attackers or [])
              & s.placement.isin(placements or [])]
    figure = plots.explorer_figure(shown, thresholds.PAPER_STUDENT_DROP_DB, thresholds.NEGLIGIBLE_PSNR_DB)
    in_words = shown.assign(task=shown.task.map(lambda name: get_task(name).title))
    return figure, in_words[list(COLUMNS)].rename(columns=COLUMNS).round(3)


def setting_link(settings: dict) -> str:
    """A relative link that opens the app on a Distill click's setting (its query: setting_from_link)."""
    query = dict(task=settings["task"], teacher=settings["teacher"], **Setting(**settings["defense"]).query(),
                 attacker=settings["attacker"], budget=settings["budget"], seed=settings["seed"])
    return "?" + urlencode(query)


def setting_from_link(query: dict) -> dict | None:
    """The setting a shared link asks for (None: a plain visit), checked as the controls would be."""
    if "task" not in query:
        return None
    try:
        task = get_task(query["task"]).name
        defense = Setting.from_query(query)
        attacker = query.get("attacker", attackers.own_attacker(task))
        attackers.attacker(attackers.attack_for(task), attacker)
        budget, seed = int(query.get("budget", attackers.attack_for(task).steps)), int(query.get("seed", 0))
    except (KeyError, ValueError) as e:
        raise gr.Error(f"This link's setting is unusable ({type(e).__name__}: {e}); the app starts as usual.") from None
    except gr.Error as e:
        raise gr.Error(f"This link's setting is unusable ({e.message}); the app starts as usual.") from None
    if defense.k > MAX_K:
        raise gr.Error(f"This link's k={defense.k} is above the Lab's {MAX_K}; the app starts as usual.")
    if not 10 <= budget <= MAX_BUDGET:
        raise gr.Error(f"This link's student budget {budget} is outside 10..{MAX_BUDGET} steps.")
    return dict(task=task, teacher=query.get("teacher", task), attacker=attacker, budget=budget, seed=seed,
                defense=defense.entry())


def point_setting(point: str) -> dict:
    """A measured setting by its id (a summary line; anything after the id is ignored), as the Lab
    loads it: task, teacher and entry."""
    s = measured()
    try:
        r = s.loc[int(str(point).split()[0])]
    except (ValueError, KeyError, IndexError):
        raise gr.Error(f"No measured setting {point!r}: pick a point of the explorer.") from None
    return dict(task=r.task, teacher=r.teacher, **entry(r))


def build_demo() -> gr.Blocks:
    first = "dehaze"
    start = presets.preset(first)
    d = start.defense
    picks = [(words[0].upper() + words[1:], name) for name, words in presets.PICKS.items()]
    device, device_note = app_device()  # where every session's teacher and students run (ASVP_DEVICE)
    with gr.Blocks(title="ASVP Lab") as demo:
        gr.Markdown("# ASVP Lab\nCan a restoration model defend itself at runtime against distillation? "
                    "Set the defense, look at the teacher, then **Distill** two students and compare.")
        teacher, scene = gr.State(None), gr.State(None)
        # the instant view, made first (rendered on the right) so the cached examples can fill it. Images
        # get plain values and their metrics go in a caption under each (never in the label, where a long
        # caption is cut off, and never as a component update, which lazily cached examples cannot replay)
        note = gr.Markdown(render=False)
        inp, gt = gr.Image(label="input", render=False), gr.Image(label="ground truth", render=False)
        clean = gr.Image(label="teacher", render=False)
        defended = gr.Image(label="teacher + ASVP", render=False)
        spectra, freq = gr.Plot(label="spectra", render=False), gr.Plot(label="frequency content", render=False)
        pert = gr.Image(label="perturbation", render=False)
        inp_cap, gt_cap, clean_cap, defended_cap, pert_cap = (gr.Markdown(render=False) for _ in range(5))
        views = [note, inp, gt, clean, defended, spectra, pert, freq, inp_cap, gt_cap, clean_cap, defended_cap, pert_cap]

        # handler parameters are named as the HTTP API shows them, even where they shadow a component
        @user_errors
        def on_look(state, task, image, already_degraded, seed, k, a, layer, layout, adaptive, tau, placement):
            fresh = not (state and state.task.name == task)  # no teacher yet, or one of another task
            session = sessions.session_teacher(task, device=device) if fresh else state
            defense = defense_from(k, a, layer, layout, adaptive, tau, placement)
            view_scene = scenes.make_scene(get_task(task), read_image(image), bool(already_degraded), int(seed))
            duels.start_queries(view_scene.task, attackers.attack_for(task), int(seed))  # ready by the Distill click
            view = looks.look(session.model, view_scene, defense)
            s = view.scores
            truth = None if view_scene.target is None else to_uint8(view_scene.target)
            # the teacher state is written only when this look made it: a slow look that ends after
            # a Load must not put the teacher it started with back
            return {**({teacher: session} if fresh else {}), scene: view_scene, note: view_scene.note,
                    inp: to_uint8(view.baseline), inp_cap: caption("input", s.input),
                    gt: truth, gt_cap: "ground truth" if truth is not None else "no ground truth (degraded upload)",
                    clean: to_uint8(view.clean), clean_cap: caption("teacher", s.teacher),
                    defended: to_uint8(view.defended), defended_cap: caption("teacher + ASVP", s.defended_teacher),
                    spectra: plots.spectra_figure(*view.spectra, defense.k, layer),
                    pert: to_uint8(view.perturbation), pert_cap: perturbation_caption(view.span),
                    freq: plots.frequency_figure(view.freqs, view.power)}

        def example_view(image_path, task_name):
            """What an example shows at the task's defaults: cached by Gradio, so a click answers at once."""
            d = presets.preset(task_name).defense
            shown = on_look(None, task_name, image_path, False, 0, d.k, d.a, d.layers[0], d.layout, d.tau is not None,
                            d.tau or 0.9, d.placement)
            return {view: shown[view] for view in views}

        pending = gr.State(None)  # a setting picked in the explorer, applied by the next load of its teacher
        same_task = gr.State(False)  # whether that setting is of the Lab's current task
        with gr.Tabs(selected="lab") as tabs:
            with gr.Tab("Lab", id="lab"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        # at 1440 x 900 everything up to Distill fits on one screen; the rest is folded below it
                        task = gr.Dropdown([(t.title, t.name) for t in TASKS.values()], value=first, label="Task")
                        # the whole width for the family's name: "Real-ESRGAN Compact (SRVGGNet)" is the longest
                        source = gr.Dropdown(registry.bundled_choices(first), value=first, label="Teacher",
                                             allow_custom_value=True, info="a bundled family, or type a Hub repo id")
                        load_btn = gr.Button("Load teacher", size="sm")
                        image = UploadPath(str(ROOT / "assets" / "coffee.png"), type="filepath", image_mode=None,
                                           label=f"Image (downscaled to {MAX_SIDE} px)", sources=["upload", "clipboard"],
                                           height=170)
                        already = gr.Checkbox(False, label="This image is already degraded (no ground truth)")
                        k = gr.Slider(0, MAX_K, value=d.k, step=1, label="k: singular values amplified")
                        a = gr.Slider(1.0, 100.0, value=d.a, step=0.05, label="a: amplification")
                        distill_btn = gr.Button("Distill", variant="primary")
                        with gr.Accordion("More defense settings", open=False):
                            pick = gr.Radio(picks, value="negligible", label="Start from the search's setting",
                                            info="per task and teacher family, from results/defaults.json (the "
                                                 "teacher facts name it and what it measured)")
                            layer = gr.Dropdown([d.layers[0]], value=d.layers[0], label="Hooked layer", allow_custom_value=True,
                                                info="the teacher's feature maps: channels x height x width")
                            layout = gr.Radio(["channel", "spatial"], value=d.layout, label="Layout",
                                              info="channel: C x HW matrix per image; spatial: each channel's H x W map")
                            adaptive = gr.Checkbox(d.tau is not None, label="Adaptive k (energy threshold tau)")
                            tau = gr.Slider(0.05, 1.0, value=d.tau or 0.9, step=0.05, label="tau")
                            placement = gr.Radio(["inline", "exposed"], value=d.placement, label="Placement",
                                                 info="inline: served output changes; exposed: only features handed out")
                        with gr.Accordion("Attacker and seed", open=False):
                            attacker = gr.Dropdown(list(attackers.ATTACKERS), value=start.attacker, label="Attacker",
                                                   info="output KD fits the served answers; feature KD and FitNet also "
                                                        "read the hooked layer's features")
                            budget = gr.Slider(10, MAX_BUDGET, value=start.attack.steps, step=10,
                                               label="Student budget (steps)")
                            seed = gr.Number(0, precision=0, label="Seed (degradation and students)")
                        # named, not drawn as a table: a table of thumbnails and task names overflows this column
                        gr.Examples([[str(ROOT / "assets" / f"{photo}.png"), t.name] for photo, t in EXAMPLES],
                                    inputs=[image, task], outputs=views, fn=example_view,
                                    example_labels=[f"{t.title} · {photo}" for photo, t in EXAMPLES],
                                    label="CC0 examples (clean: the task degrades them)",
                                    cache_examples=True, cache_mode="lazy")
                    with gr.Column(scale=3):
                        with gr.Accordion("Teacher: model card facts and measured quality", open=False):
                            facts = gr.Markdown()
                        note.render()
                        with gr.Row():
                            for view, under in ((inp, inp_cap), (gt, gt_cap), (clean, clean_cap), (defended, defended_cap)):
                                with gr.Column(min_width=160):
                                    view.render()
                                    under.render()
                        with gr.Row():
                            spectra.render()
                            with gr.Column(min_width=160):
                                pert.render()
                                pert_cap.render()
                            freq.render()
                        loss = gr.Plot(label="distillation")
                        with gr.Row():
                            s_clean = gr.Image(label="student taught by the clean teacher")
                            s_def = gr.Image(label="student taught by the defended teacher")
                        table = gr.Dataframe(label="PSNR / SSIM", interactive=False)
                        verdict = gr.Markdown()
                        link = gr.Markdown()
                        download = gr.DownloadButton("Download this session (zip: settings, images, metrics, verdict)",
                                                     interactive=False)
            with gr.Tab("Trade-off", id="explorer"):
                gr.Markdown("Every setting the search measured (`python -m app.experiments`, real benchmark pairs, "
                            "mean ± std over seeds; results/RESULTS.md). Filter, hover for the setting, click a "
                            "point to load it into the Lab. Costly settings stretch the axes: drag a box around "
                            "zero teacher cost (where the paper's headline sits) to zoom in, double-click to zoom out.")
                everything = measured()
                with gr.Row():
                    tasks_shown = gr.CheckboxGroup([(t.title, t.name) for t in TASKS.values()], value=list(TASKS),
                                                   label="Tasks")
                    families_shown = gr.CheckboxGroup(sorted(set(everything.teacher_family)),
                                                      value=sorted(set(everything.teacher_family)), label="Families")
                    placements_shown = gr.CheckboxGroup(["inline", "exposed"], value=["inline", "exposed"],
                                                        label="Placement")
                attackers_shown = gr.Dropdown(sorted(set(everything.attacker)), value=sorted(set(everything.attacker)),
                                              multiselect=True, label="Attackers")
                explorer = gr.Plot(elem_id="explorer", label="teacher cost vs student drop")
                point = gr.Textbox(elem_id="explorer-point", show_label=False, container=False)
                explored = gr.Dataframe(label="the settings shown", interactive=False)
                sweep_btn = gr.Button("Quick sweep over a (current image)")
                sweep_plot = gr.Plot(label="teacher cost as a grows, on the Lab's image and setting")
            with gr.Tab("Guided tour", id="tour"):
                gr.Markdown("Three settings from the search, for a class: each loads into the Lab with one click "
                            "(then press **Distill** to see it happen on the image).")
                tour = []
                for title, row, text in scenarios(everything):
                    with gr.Group():
                        gr.Markdown(f"### {title}\n\n{text}")
                        tour.append((gr.Button(f"Load: {title}"), row))
                if not tour:
                    gr.Markdown("No search has been run yet: `python -m app.experiments`.")
            with gr.Tab("About"):
                gr.Markdown(ABOUT + f"\n## The output-KD bound\n\n{DERIVATION}\n\n## What this lab measured\n\n"
                            "From results/RESULTS.md (teacher cost and student change against the ground truth, "
                            "mean ± std over seeds, beside the noise floor):\n\n" + measured_verdicts(RESULTS))

        controls = [k, a, layer, layout, adaptive, tau, placement]

        @user_errors
        def on_load(task, source, pick, picked=None):
            session = sessions.session_teacher(task, source, device)
            if session.loaded.warning:
                gr.Warning(session.loaded.warning)
            if picked and (picked["task"], picked["teacher"]) == (task, source):  # a point from the explorer
                start = presets.measured_preset(task, picked, "the explorer's point")
            else:
                start = presets.preset(task, session.loaded.family, pick)
            names, d = [f.name for f in session.layers], start.defense
            return {teacher: session, facts: teacher_facts(session, start, device_note),
                    layer: gr.Dropdown(choices=layer_choices(session.layers),
                                       value=d.layers[0] if d.layers[0] in names else session.default_layer),
                    k: d.k, a: d.a, layout: d.layout, adaptive: d.tau is not None, tau: d.tau or 0.9,
                    placement: d.placement, attacker: start.attacker, budget: start.attack.steps, pending: None}

        @user_errors
        def on_point(point, current_task):
            """An explorer point: to the Lab, with its task and teacher; the load that follows applies it."""
            picked = point_setting(point)
            return {tabs: gr.Tabs(selected="lab"), task: picked["task"], pending: picked,
                    source: gr.Dropdown(choices=registry.bundled_choices(picked["task"]), value=picked["teacher"]),
                    same_task: picked["task"] == current_task}

        @user_errors
        def on_link(current_task, request: gr.Request):
            """A shared link's setting (?task=...): as an explorer point, with its seed; a plain visit loads
            the task's teacher as usual."""
            try:
                picked = setting_from_link(dict(request.query_params))
            except gr.Error as e:  # a broken link still opens the app, and says what was wrong
                gr.Warning(e.message)
                picked = None
            if picked is None:
                return {same_task: True}
            return {task: picked["task"], pending: picked, seed: picked["seed"], same_task: picked["task"] == current_task,
                    source: gr.Dropdown(choices=registry.bundled_choices(picked["task"]), value=picked["teacher"])}

        def load_in_place(task, source, pick, picked, same):
            """Within the same task no task change follows a point, so its load runs here."""
            return on_load(task, source, pick, picked) if same else {c: gr.skip() for c in load_out}

        def source_for(task, picked):
            """A task's teacher choices, on the explorer's teacher when a point asked for this task."""
            chosen = picked["teacher"] if picked and picked["task"] == task else task
            return gr.Dropdown(choices=registry.bundled_choices(task), value=chosen)

        @user_errors
        def on_distill(state, scene, k, a, layer, layout, adaptive, tau, placement, attacker, budget, seed,
                       progress=gr.Progress()):
            if scene is None:
                raise gr.Error("Pick an image first: the students are scored on it.")
            defense = defense_from(k, a, layer, layout, adaptive, tau, placement)
            attack = dataclasses.replace(attackers.attacker(attackers.attack_for(scene.task.name), attacker),
                                         steps=int(budget))
            floor = presets.noise_floor(scene.task.name, state.loaded.family)
            for update in duels.duel(state.model, scene, defense, attack, int(seed)):
                progress(update.step / update.total, desc=f"distilling: step {update.step}/{update.total}")
                shown = {loss: plots.loss_figure(update.history)}
                if update.students is not None:
                    rows, said = score_rows(update.scores), verdict_markdown(update.verdict, defense, attack, floor)
                    settings = dict(task=scene.task.name, teacher=state.source, seed=int(seed),
                                    defense=dataclasses.asdict(defense), attacker=attacker, budget=int(budget))
                    settings["link"] = setting_link(settings)
                    images = {"degraded": scene.degraded, "input": scenes.baseline(scene), "ground_truth": scene.target,
                              "teacher": update.teachers[0], "teacher_asvp": update.teachers[1],
                              "student_clean_teacher": update.students[0],
                              "student_defended_teacher": update.students[1]}
                    bundle = session_zip(Path(tempfile.mkdtemp(prefix="asvp-session-")) / "asvp-session.zip",
                                         settings, images, rows, said)
                    shown.update({s_clean: gr.Image(to_uint8(update.students[0])),
                                  s_def: gr.Image(to_uint8(update.students[1])),
                                  table: pd.DataFrame(rows, columns=METRICS_HEADER), verdict: said,
                                  download: gr.DownloadButton(value=str(bundle), interactive=True),
                                  link: f"[This setting as a link]({settings['link']}) (opens the Lab on it; press "
                                        f"Distill to rerun it)"})
                yield shown

        @user_errors
        def on_sweep(state, scene, k, layer, layout, adaptive, tau, placement):
            if scene is None:
                raise gr.Error("Pick an image first.")
            points = [looks.teacher_cost(state.model, scene, defense_from(k, a, layer, layout, adaptive, tau, placement))
                      for a in SWEEP_A]
            return plots.sweep_figure(SWEEP_A, [p[0] for p in points], [p[1] for p in points])

        look_in = [teacher, task, image, already, seed, *controls]
        look_out = [teacher, scene, *views]
        load_out = [teacher, facts, layer, k, a, layout, adaptive, tau, placement, attacker, budget, pending]
        private = dict(api_visibility="private")
        load_btn.click(on_load, [task, source, pick], load_out, api_name="load_teacher").then(
            on_look, look_in, look_out, **private)
        task.change(source_for, [task, pending], source, **private).then(
            on_load, [task, source, pick, pending], load_out, **private).then(on_look, look_in, look_out, **private)
        # one listener for every control: a session's looks run in order, the newest one last. The defense
        # controls answer the visitor's input only: a load sets them together and then looks once itself
        # (their change events would fire one by one, a look seeing the new teacher with the old layer)
        gr.on([image.change, already.change, seed.change, *(c.input for c in controls)], on_look, look_in, look_out,
              api_name="look", trigger_mode="always_last")
        distill_btn.click(on_distill, [teacher, scene, *controls, attacker, budget, seed],
                          [loss, s_clean, s_def, table, verdict, link, download], api_name="distill", concurrency_limit=2)
        sweep_btn.click(on_sweep, [teacher, scene, k, layer, layout, adaptive, tau, placement], sweep_plot,
                        api_name="sweep")
        pick.input(on_load, [task, source, pick], load_out, **private).then(on_look, look_in, look_out, **private)
        filters = [tasks_shown, families_shown, attackers_shown, placements_shown]
        gr.on([f.change for f in filters], explore, filters, [explorer, explored], api_name="explore")
        def to_lab(event, fn, inputs, **how):
            """A measured setting into the Lab: pick it, load its teacher where no task change will, look."""
            event(fn, inputs, [tabs, task, pending, source, same_task], **how).then(
                load_in_place, [task, source, pick, pending, same_task], load_out, **private).then(
                on_look, look_in, look_out, **private)

        to_lab(point.change, on_point, [point, task], api_name="explorer_point")
        for button, row in tour:
            to_lab(button.click, functools.partial(on_point, str(row)), [task], **private)
        demo.load(None, js=POINT_BRIDGE)
        demo.load(on_link, [task], [task, pending, seed, source, same_task], **private).then(
            load_in_place, [task, source, pick, pending, same_task], load_out, **private).then(
            on_look, look_in, look_out, **private).then(explore, filters, [explorer, explored], **private)
    demo.queue(max_size=32, default_concurrency_limit=4)
    return demo
