"""A setting shared as a link: the Distill click's query opens the Lab on the same setting, and a
broken link opens the app as usual with a message."""
import re
from urllib.parse import parse_qsl

import gradio as gr
import pytest
from helpers import open_app
from playwright.sync_api import expect, sync_playwright

from app.data.tasks import TASKS
from app.ui.settings import setting_from_link, setting_link


# k=64 with tau: the search's adaptive setting, whose k is only a cap
SETTINGS = dict(task="sr_x4", teacher="sr_x4-compact", seed=3, attacker="FitNet MSE", budget=120,
                defense=dict(layers=("net.body.13",), layout="spatial", k=64, a=30.0, tau=0.9, placement="exposed"))


def test_a_link_carries_the_whole_setting_back():
    link = setting_link(SETTINGS)
    assert link.startswith("?task=sr_x4&teacher=sr_x4-compact")
    picked = setting_from_link(dict(parse_qsl(link[1:])))
    assert picked == dict(task="sr_x4", teacher="sr_x4-compact", attacker="FitNet MSE", budget=120, seed=3,
                          defense=dict(layer="net.body.13", layout="spatial", k=64, a=30.0, tau=0.9, placement="exposed"))
    assert setting_from_link({}) is None  # a plain visit


@pytest.mark.parametrize("query,message", [
    (dict(task="sr_x3", layer="dec1", k="1", a="2"), "unusable"),
    (dict(task="dehaze", layer="dec1", k="one", a="2"), "unusable"),
    (dict(task="dehaze", layer="dec1", k="1", a="nan"), "a must be a finite number"),
    (dict(task="dehaze", k="1", a="2"), "KeyError"),
    (dict(task="dehaze", layer="dec1", k="1", a="2", attacker="telepathy"), "unknown attacker 'telepathy'"),
    (dict(task="dehaze", layer="dec1", k="1", a="2", budget="100000"), "outside 10..600"),
    (dict(task="dehaze", layer="dec1", k="65", a="2"), "k=65 is above the Lab's 64"),
])
def test_a_broken_link_is_refused_with_the_reason(query, message):
    with pytest.raises(gr.Error, match=message):
        setting_from_link(query)


@pytest.mark.browser
@pytest.mark.slow
def test_a_link_opens_the_lab_on_its_setting_and_a_broken_one_says_why(app_url):
    link = setting_link(dict(SETTINGS, teacher="sr_x4", defense=dict(SETTINGS["defense"], layers=("enc2",))))
    with sync_playwright() as p:
        browser, page = open_app(p, app_url + link)
        expect(page.get_by_label("Task", exact=True)).to_have_value(TASKS["sr_x4"].title, timeout=60_000)
        a_box = page.get_by_label("a: amplification", exact=False).locator("xpath=..").locator("input[type=number]")
        expect(a_box).to_have_value(re.compile(r"^30(\.0+)?$"), timeout=60_000)
        page.get_by_text("Attacker and seed").click()
        expect(page.get_by_label("Seed (degradation and students)")).to_have_value("3")
        page.goto(app_url + "?task=dehaze&k=1&a=2")  # no layer
        expect(page.locator(".toast-body")).to_contain_text("This link's setting is unusable", timeout=60_000)
        expect(page.get_by_text("teacher + ASVP: ")).to_be_visible(timeout=60_000)  # the app started as usual
        browser.close()
