"""The Gradio app: the four tabs, and the events that carry a measured setting (an explorer point, a
tour button, a shared link) into the Lab. Knows the lab's service, not torch internals."""
from __future__ import annotations

import functools

import gradio as gr

from app.devices import app_device
from app.teachers import registry
from app.ui.about_tab import about_tab
from app.ui.explorer_tab import POINT_BRIDGE, explore, explorer_tab, on_sweep
from app.ui.inputs import user_errors
from app.ui.lab_tab import PRIVATE, Lab, lab_tab, load_then_look
from app.ui.settings import measured, point_setting, setting_from_link
from app.ui.tour_tab import tour_tab


# lines between words, never inside one ("deha-ze"), and scroll sideways where they cannot fit
CSS = (".prose table { display: block; overflow-x: auto; } "
       ".prose td, .prose th { overflow-wrap: normal; word-break: normal; }")


def build_demo() -> gr.Blocks:
    device, device_note = app_device()  # where every session's teacher and students run (ASVP_DEVICE)
    with gr.Blocks(title="ASVP Lab") as demo:
        gr.Markdown("# ASVP Lab\nCan a restoration model defend itself at runtime against distillation? "
                    "Set the defense, look at the teacher, then **Distill** two students and compare.")
        everything = measured()
        with gr.Tabs(selected="lab") as tabs:
            with gr.Tab("Lab", id="lab"):
                lab = lab_tab(device, device_note)
            with gr.Tab("Trade-off", id="explorer"):
                explorer = explorer_tab(everything)
            with gr.Tab("Guided tour", id="tour"):
                tour = tour_tab(everything)
            with gr.Tab("About"):
                about_tab()
        explorer.sweep_btn.click(on_sweep, [lab.teacher, lab.scene, lab.k, lab.layer, lab.layout, lab.adaptive, lab.tau,
                                            lab.placement], explorer.sweep_plot, api_name="sweep")
        on_point = point_handler(lab, tabs)
        to_lab(lab, point_event(lab, tabs, explorer.point.change, on_point, [explorer.point, lab.task],
                                api_name="explorer_point"))
        for button, row in tour:
            to_lab(lab, point_event(lab, tabs, button.click, functools.partial(on_point, str(row)), [lab.task],
                                    **PRIVATE))
        demo.load(None, js=POINT_BRIDGE)
        link = demo.load(link_handler(lab), [lab.task], [lab.task, lab.pending, lab.seed, lab.source, lab.same_task],
                         **PRIVATE)
        to_lab(lab, link).then(explore, explorer.filters, [explorer.plot, explorer.table], **PRIVATE)
    demo.queue(max_size=32, default_concurrency_limit=4)
    return demo


def point_handler(lab: Lab, tabs: gr.Tabs):
    @user_errors
    def on_point(point, current_task):
        """A measured setting: to the Lab, with its task and teacher; the load that follows applies it."""
        picked = point_setting(point)
        return {tabs: gr.Tabs(selected="lab"), lab.task: picked["task"], lab.pending: picked,
                lab.source: gr.Dropdown(choices=registry.teacher_choices(picked["task"]), value=picked["teacher"]),
                lab.same_task: picked["task"] == current_task}
    return on_point


def point_event(lab: Lab, tabs: gr.Tabs, event, fn, inputs, **how):
    return event(fn, inputs, [tabs, lab.task, lab.pending, lab.source, lab.same_task], **how)


def link_handler(lab: Lab):
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
            return {lab.same_task: True}
        return {lab.task: picked["task"], lab.pending: picked, lab.seed: picked["seed"],
                lab.same_task: picked["task"] == current_task,
                lab.source: gr.Dropdown(choices=registry.teacher_choices(picked["task"]), value=picked["teacher"])}
    return on_link


def to_lab(lab: Lab, picked):
    """After a measured setting was picked: within the same task no task change follows to load its
    teacher, so the load (and its look) runs here. Returns the look's event."""
    def load_in_place(task, source, pick, picked, same):
        return lab.on_load(task, source, pick, picked) if same else {c: gr.skip() for c in lab.load_out}

    return load_then_look(lab, picked.then, load_in_place, [lab.task, lab.source, lab.pick, lab.pending,
                                                             lab.same_task], **PRIVATE)
