"""The Lab tab: pick a task, teacher and image, set the defense, look at the teacher with and without
it, then Distill two students and read the verdict. Its components live on one `Lab`, its handlers
beside them (named as the HTTP API shows their parameters)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import gradio as gr
import pandas as pd
import torch

from app.attack import attackers
from app.attack.distill import Attack
from app.data.images import MAX_SIDE, to_uint8
from app.data.tasks import TASKS, get_task
from app.lab import duels, looks, presets, scenes
from app.lab.export import METRICS_HEADER, new_export_path, session_zip
from app.teachers import registry, sessions
from app.ui import plots
from app.ui.inputs import MAX_BUDGET, MAX_K, UploadPath, defense_from, read_image, user_errors
from app.ui.settings import setting_link
from app.ui.texts import caption, layer_choices, perturbation_caption, score_rows, teacher_facts, verdict_markdown


ROOT = Path(__file__).resolve().parents[2]
FIRST_TASK = "dehaze"
EXAMPLES = [(t.examples[i % len(t.examples)], t) for i, t in enumerate(TASKS.values())]  # a CC0 photo per task
PICKS = [(words[0].upper() + words[1:], name) for name, words in presets.PICKS.items()]
PRIVATE = dict(api_visibility="private")
VIEWS = ("note", "inp", "gt", "clean", "defended", "spectra", "pert", "freq", "inp_cap", "gt_cap", "clean_cap",
         "defended_cap", "pert_cap")


class Lab:
    """The Lab's components (attributes named as in the layout), the device its sessions run on, and
    the states a look, a load and a measured setting share."""

    def __init__(self, device: torch.device, device_note: str):
        self.device, self.device_note = device, device_note
        self.teacher, self.scene = gr.State(None), gr.State(None)
        self.pending = gr.State(None)  # a measured setting (explorer, tour, link) the next load applies
        self.same_task = gr.State(False)  # whether that setting is of the Lab's current task

    @property
    def controls(self) -> list:
        return [self.k, self.a, self.layer, self.layout, self.adaptive, self.tau, self.placement]

    @property
    def views(self) -> list:
        """What a look fills (the cached examples replay these)."""
        return [getattr(self, name) for name in VIEWS]

    @property
    def look_in(self) -> list:
        return [self.teacher, self.task, self.image, self.already, self.seed, *self.controls, self.attacker,
                self.budget]

    @property
    def look_out(self) -> list:
        return [self.teacher, self.scene, *self.views]

    @property
    def load_out(self) -> list:
        return [self.teacher, self.facts, self.layer, self.k, self.a, self.layout, self.adaptive, self.tau, self.placement,
                self.attacker, self.budget, self.pending]


def lab_tab(device: torch.device, device_note: str) -> Lab:
    """The tab's layout (settings on the left, what they show on the right) and its own events."""
    lab = Lab(device, device_note)
    # the instant view, made first (rendered on the right) so the cached examples can fill it. Images get
    # plain values and their metrics go in a caption under each (never in the label, where a long caption
    # is cut off, and never as a component update, which lazily cached examples cannot replay)
    lab.note, lab.inp, lab.gt = gr.Markdown(render=False), gr.Image(label="input", render=False), \
        gr.Image(label="ground truth", render=False)
    lab.clean, lab.defended = gr.Image(label="teacher", render=False), gr.Image(label="teacher + ASVP", render=False)
    lab.spectra, lab.freq = gr.Plot(label="spectra", render=False), gr.Plot(label="frequency content", render=False)
    lab.pert = gr.Image(label="perturbation", render=False)
    lab.inp_cap, lab.gt_cap, lab.clean_cap, lab.defended_cap, lab.pert_cap = (gr.Markdown(render=False)
                                                                             for _ in range(5))
    lab.on_look = look_handler(lab)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            settings_column(lab)
        with gr.Column(scale=3):
            views_column(lab)
    wire(lab)
    return lab


def settings_column(lab: Lab) -> None:
    """At 1440 x 900 everything up to Distill fits on one screen; the rest is folded below it."""
    start = presets.preset(FIRST_TASK)
    d = start.defense.controls()
    lab.task = gr.Dropdown([(t.title, t.name) for t in TASKS.values()], value=FIRST_TASK, label="Task")
    # the whole width for the family's name: "Real-ESRGAN Compact (SRVGGNet)" is the longest
    lab.source = gr.Dropdown(registry.teacher_choices(FIRST_TASK), value=FIRST_TASK, label="Teacher",
                             allow_custom_value=True, info="a bundled family, or type a Hub repo id")
    lab.load_btn = gr.Button("Load teacher", size="sm")
    lab.image = UploadPath(str(ROOT / "assets" / "coffee.png"), type="filepath", image_mode=None,
                           label=f"Image (downscaled to {MAX_SIDE} px)", sources=["upload", "clipboard"], height=170)
    lab.already = gr.Checkbox(False, label="This image is already degraded (no ground truth)")
    lab.k = gr.Slider(0, MAX_K, value=d["k"], step=1, label="k: singular values amplified")
    lab.a = gr.Slider(1.0, 100.0, value=d["a"], step=0.05, label="a: amplification")
    lab.distill_btn = gr.Button("Distill", variant="primary")
    with gr.Accordion("More defense settings", open=False):
        lab.pick = gr.Radio(PICKS, value="negligible", label="Start from the search's setting",
                            info="per task and teacher family, from results/defaults.json (the teacher facts name "
                                 "it and what it measured)")
        lab.layer = gr.Dropdown([d["layer"]], value=d["layer"], label="Hooked layer", allow_custom_value=True,
                                info="the teacher's feature maps: channels x height x width")
        lab.layout = gr.Radio(["channel", "spatial"], value=d["layout"], label="Layout",
                              info="channel: C x HW matrix per image; spatial: each channel's H x W map")
        lab.adaptive = gr.Checkbox(d["adaptive"], label="Adaptive k (energy threshold tau)")
        lab.tau = gr.Slider(0.05, 1.0, value=d["tau"], step=0.05, label="tau")
        lab.placement = gr.Radio(["inline", "exposed"], value=d["placement"], label="Placement",
                                 info="inline: served output changes; exposed: only features handed out")
    with gr.Accordion("Attacker and seed", open=False):
        lab.attacker = gr.Dropdown(list(attackers.NAMED), value=start.attacker, label="Attacker",
                                   info="output KD fits the served answers; feature KD and FitNet also read the "
                                        "hooked layer's features")
        lab.budget = gr.Slider(10, MAX_BUDGET, value=start.attack.steps, step=10, label="Student budget (steps)")
        lab.seed = gr.Number(0, precision=0, label="Seed (degradation and students)")
    # named, not drawn as a table: a table of thumbnails and task names overflows this column
    gr.Examples([[str(ROOT / "assets" / f"{photo}.png"), t.name] for photo, t in EXAMPLES],
                inputs=[lab.image, lab.task], outputs=lab.views, fn=example_handler(lab),
                example_labels=[f"{t.title} · {photo}" for photo, t in EXAMPLES],
                label="CC0 examples (clean: the task degrades them)", cache_examples=True, cache_mode="lazy")


def views_column(lab: Lab) -> None:
    with gr.Accordion("Teacher: model card facts and measured quality", open=False):
        lab.facts = gr.Markdown()
    lab.note.render()
    with gr.Row():
        for view, under in ((lab.inp, lab.inp_cap), (lab.gt, lab.gt_cap), (lab.clean, lab.clean_cap),
                            (lab.defended, lab.defended_cap)):
            with gr.Column(min_width=160):
                view.render()
                under.render()
    with gr.Row():
        lab.spectra.render()
        with gr.Column(min_width=160):
            lab.pert.render()
            lab.pert_cap.render()
        lab.freq.render()
    lab.loss = gr.Plot(label="distillation")
    with gr.Row():
        lab.s_clean = gr.Image(label="student taught by the clean teacher")
        lab.s_def = gr.Image(label="student taught by the defended teacher")
    lab.table = gr.Dataframe(label="PSNR / SSIM", interactive=False)
    lab.verdict, lab.link = gr.Markdown(), gr.Markdown()
    lab.download = gr.DownloadButton("Download this session (zip: settings, images, metrics, verdict)",
                                     interactive=False)


def look_handler(lab: Lab):
    @user_errors
    def on_look(state, task, image, already_degraded, seed, k, a, layer, layout, adaptive, tau, placement,
                attacker=None, budget=None):
        fresh = not (state and state.task.name == task)  # no teacher yet, or one of another task
        session = sessions.session_teacher(task, device=lab.device) if fresh else state
        defense = defense_from(k, a, layer, layout, adaptive, tau, placement)
        scene = scenes.make_scene(get_task(task), read_image(image), bool(already_degraded), int(seed),
                                  session.max_side)
        attack = duels.fitted_queries(chosen_attack(task, attacker, budget), session.loaded.cost)
        duels.start_queries(scene.task, attack, int(seed))  # made while the teacher looks
        view = looks.look(session.model, scene, defense)
        duels.prepare_click(session.model, scene.task, defense, attack, int(seed))  # ready by the Distill click
        s = view.scores
        truth = None if scene.target is None else to_uint8(scene.target)
        # the teacher state is written only when this look made it: a slow look that ends after a Load
        # must not put the teacher it started with back
        return {**({lab.teacher: session} if fresh else {}), lab.scene: scene, lab.note: scene.note,
                lab.inp: to_uint8(view.baseline), lab.inp_cap: caption("input", s.input),
                lab.gt: truth, lab.gt_cap: "ground truth" if truth is not None else "no ground truth (degraded upload)",
                lab.clean: to_uint8(view.clean), lab.clean_cap: caption("teacher", s.teacher),
                lab.defended: to_uint8(view.defended), lab.defended_cap: caption("teacher + ASVP", s.defended_teacher),
                lab.spectra: plots.spectra_figure(*view.spectra, defense.k, layer),
                lab.pert: to_uint8(view.perturbation), lab.pert_cap: perturbation_caption(view.span),
                lab.freq: plots.frequency_figure(view.freqs, view.power)}
    return on_look


def example_handler(lab: Lab):
    def example_view(image_path, task_name):
        """What an example shows at the task's defaults: cached by Gradio, so a click answers at once."""
        shown = lab.on_look(None, task_name, image_path, False, 0, **presets.preset(task_name).defense.controls())
        return {view: shown[view] for view in lab.views}
    return example_view


def load_handler(lab: Lab):
    @user_errors
    def on_load(task, source, pick, picked=None):
        session = sessions.session_teacher(task, source, lab.device)
        if session.loaded.warning:
            gr.Warning(session.loaded.warning)
        if picked and (picked["task"], picked["teacher"]) == (task, source):  # a measured setting of this teacher
            start = presets.measured_preset(task, picked, "the explorer's point")
        else:
            start = presets.preset(task, session.loaded.family, pick)
        d = start.defense.controls()
        layer = d.pop("layer")
        chosen = layer if layer in [f.name for f in session.layers] else session.default_layer
        return {lab.teacher: session, lab.facts: teacher_facts(session, start, lab.device_note),
                lab.layer: gr.Dropdown(choices=layer_choices(session.layers), value=chosen),
                **{getattr(lab, name): value for name, value in d.items()},
                lab.attacker: start.attacker, lab.budget: start.attack.steps, lab.pending: None}
    return on_load


def source_for(task, picked):
    """A task's teacher choices, on the measured setting's teacher when one asked for this task."""
    chosen = picked["teacher"] if picked and picked["task"] == task else task
    return gr.Dropdown(choices=registry.teacher_choices(task), value=chosen)


def load_then_look(lab: Lab, event, fn, inputs, **how):
    """The one chain that changes the Lab's teacher or setting: `fn` on `event` (its outputs are a
    load's), then a look with what it set."""
    return event(fn, inputs, lab.load_out, **how).then(lab.on_look, lab.look_in, lab.look_out, **PRIVATE)


def distill_handler(lab: Lab):
    @user_errors
    def on_distill(state, scene, k, a, layer, layout, adaptive, tau, placement, attacker, budget, seed,
                   progress=gr.Progress()):
        if scene is None:
            raise gr.Error("Pick an image first: the students are scored on it.")
        defense = defense_from(k, a, layer, layout, adaptive, tau, placement)
        asked = chosen_attack(scene.task.name, attacker, budget)
        attack = duels.fitted_queries(asked, state.loaded.cost)
        floor = presets.noise_floor(scene.task.name, state.loaded.family)
        for update in duels.duel(state.model, scene, defense, attack, int(seed)):
            progress(update.step / update.total, desc=f"distilling: step {update.step}/{update.total}")
            shown = {lab.loss: plots.loss_figure(update.history)}
            if update.students is not None:
                settings = dict(task=scene.task.name, teacher=state.source, seed=int(seed),
                                defense=dataclasses.asdict(defense), attacker=attacker, budget=int(budget))
                said = verdict_markdown(update.verdict, defense, attack, floor, asked.queries)
                shown.update(distilled(lab, scene, update, settings, said))
            yield shown
    return on_distill


def chosen_attack(task: str, attacker: str | None, budget) -> Attack:
    """The named attacker at the chosen budget (the task's own where none is chosen yet)."""
    attack = attackers.attacker(attackers.attack_for(task), attacker) if attacker else attackers.attack_for(task)
    return attack if budget is None else dataclasses.replace(attack, steps=int(budget))


def distilled(lab: Lab, scene, update: duels.DuelUpdate, settings: dict, said: str) -> dict:
    """The end of a Distill click: both students, the table, the verdict, a link and the session's zip."""
    rows = score_rows(update.scores)
    settings["link"] = setting_link(settings)
    images = {"degraded": scene.degraded, "input": scenes.baseline(scene), "ground_truth": scene.target,
              "teacher": update.teachers[0], "teacher_asvp": update.teachers[1],
              "student_clean_teacher": update.students[0], "student_defended_teacher": update.students[1]}
    bundle = session_zip(new_export_path(), settings, images, rows, said)
    return {lab.s_clean: gr.Image(to_uint8(update.students[0])), lab.s_def: gr.Image(to_uint8(update.students[1])),
            lab.table: pd.DataFrame(rows, columns=METRICS_HEADER), lab.verdict: said,
            lab.download: gr.DownloadButton(value=str(bundle), interactive=True),
            lab.link: f"[This setting as a link]({settings['link']}) (opens the Lab on it; press Distill to rerun it)"}


def wire(lab: Lab) -> None:
    """The tab's own events: load, task change, pick, every control's look, Distill."""
    lab.on_load = load_handler(lab)
    load_then_look(lab, lab.load_btn.click, lab.on_load, [lab.task, lab.source, lab.pick], api_name="load_teacher")
    load_then_look(lab, lab.task.change(source_for, [lab.task, lab.pending], lab.source, **PRIVATE).then,
                   lab.on_load, [lab.task, lab.source, lab.pick, lab.pending], **PRIVATE)
    load_then_look(lab, lab.pick.input, lab.on_load, [lab.task, lab.source, lab.pick], **PRIVATE)
    # one listener for every control: a session's looks run in order, the newest one last. The defense
    # controls answer the visitor's input only: a load sets them together and then looks once itself
    # (their change events would fire one by one, a look seeing the new teacher with the old layer)
    gr.on([lab.image.change, lab.already.change, lab.seed.change, *(c.input for c in lab.controls)], lab.on_look,
          lab.look_in, lab.look_out, api_name="look", trigger_mode="always_last")
    lab.distill_btn.click(distill_handler(lab), [lab.teacher, lab.scene, *lab.controls, lab.attacker, lab.budget,
                                                 lab.seed],
                          [lab.loss, lab.s_clean, lab.s_def, lab.table, lab.verdict, lab.link, lab.download],
                          api_name="distill", concurrency_limit=2)
