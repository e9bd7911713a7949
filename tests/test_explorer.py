"""The trade-off explorer: every measured setting, filtered, with human column names; a point
loads its setting into the Lab."""
import json
import re

import pandas as pd
import pytest
from helpers import ARTIFACTS, ROOT, open_app
from playwright.sync_api import expect, sync_playwright

from app.data.tasks import TASKS
from app.study.findings import scenarios
from app.ui.settings import COLUMNS, measured


ALL = dict(tasks=list(TASKS), families=sorted(set(measured().teacher_family)),
           attackers=sorted(set(measured().attacker)), placements=["inline", "exposed"])


def points(figure: dict) -> int:
    """Measured points in a plotly figure: each setting carries its id (the bound's crosses carry none)."""
    return sum(len(trace.get("customdata", [])) for trace in json.loads(figure["plot"])["data"])


def test_the_explorer_shows_every_measured_setting_in_words_and_filters_them(client):
    figure, table = client.predict(**ALL, api_name="/explore")
    summary = pd.read_csv(ROOT / "results" / "summary.csv")
    assert points(figure) == len(table["data"]) == (summary.defense == "asvp").sum()
    assert table["headers"] == list(COLUMNS.values()) and "student ΔPSNR (dB)" in table["headers"]
    field = [row[table["headers"].index(COLUMNS["field_dpsnr"])] for row in table["data"]]
    assert sum(isinstance(v, float) and v == v for v in field) == summary[summary.defense == "asvp"].field_dpsnr.count()
    measured = set(summary.task)  # the tasks the search has rows for
    assert {row[0] for row in table["data"]} == {TASKS[t].title for t in measured}  # tasks in words, too
    plot = json.loads(figure["plot"])
    assert "paper's headline" in json.dumps(plot["layout"]) and "noise floor" in json.dumps(plot["layout"])
    for task in measured:  # every measured task has points, and a filter keeps only its own
        one, _ = client.predict(**{**ALL, "tasks": [task]}, api_name="/explore")
        assert 0 < points(one) < points(figure)
    nothing, empty = client.predict(**{**ALL, "tasks": []}, api_name="/explore")  # every task unticked
    assert points(nothing) == 0 and empty["data"] in ([], [[""] * len(COLUMNS)])
    exposed, rows = client.predict(**{**ALL, "placements": ["exposed"]}, api_name="/explore")
    assert {r[table["headers"].index("placement")] for r in rows["data"]} == {"exposed"}


@pytest.mark.parametrize("point", ["not a number", "999999", "-1", ""])
def test_a_point_that_is_no_measured_setting_is_refused(client, point):
    with pytest.raises(Exception, match="No measured setting"):
        client.predict(point=point, current_task="dehaze", api_name="/explorer_point")


@pytest.mark.browser
@pytest.mark.slow
def test_clicking_a_point_loads_its_setting_into_the_lab(app_url):
    summary = pd.read_csv(ROOT / "results" / "summary.csv")
    with sync_playwright() as p:
        browser, page = open_app(p, app_url)
        page.get_by_role("tab", name="Trade-off").click()
        dots = page.locator("#explorer .scatterlayer .trace .points path")
        expect(dots.first).to_be_visible(timeout=60_000)
        every = dots.count()
        for task in TASKS:  # keep one task: fewer points, none gone for good
            if task != "sr_x4":
                page.get_by_label(TASKS[task].title, exact=True).uncheck()
        kept = measured()[measured().task == "sr_x4"]
        crosses = int(((kept.placement == "inline") & kept.bound_db.notna()).sum())  # each in-line point's bound
        expect(dots).to_have_count(len(kept) + crosses, timeout=30_000)  # every filter applied
        assert 0 < dots.count() < every
        page.wait_for_timeout(1000)  # the last redraw settles and gets its click listener
        page.screenshot(path=str(ARTIFACTS / "explorer.png"))
        settings = page.locator("#explorer .scatterlayer .trace").first.locator(".points path")  # not a bound's cross
        shown = next(box for box in (settings.nth(i).bounding_box() for i in range(settings.count()))
                     if box and box["width"])
        page.mouse.move(shown["x"] + shown["width"] / 2, shown["y"] + shown["height"] / 2)
        page.mouse.down()
        page.mouse.up()
        expect(page.get_by_role("tab", name="Lab", selected=True)).to_be_visible(timeout=30_000)
        chosen = summary.loc[int(page.locator("#explorer-point textarea").input_value().split()[0])]
        assert chosen.task == "sr_x4"
        k_box = page.get_by_label("k: singular values amplified", exact=False).locator("xpath=..").locator(
            "input[type=number]")
        a_box = page.get_by_label("a: amplification", exact=False).locator("xpath=..").locator("input[type=number]")
        expect(k_box).to_have_value(str(int(chosen.k)), timeout=60_000)
        expect(a_box).to_have_value(re.compile(rf"^{chosen.a:g}(\.0+)?$"))
        expect(page.get_by_label("Task", exact=True)).to_have_value(TASKS["sr_x4"].title)
        page.get_by_text("Teacher: model card facts").click()
        expect(page.get_by_text("the explorer's point", exact=False)).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "explorer-loaded.png"))
        browser.close()


@pytest.mark.browser
@pytest.mark.slow
def test_a_tour_scenario_loads_with_one_click(app_url):
    title, row, _text = scenarios(measured())[0]
    chosen = measured().loc[row]
    with sync_playwright() as p:
        browser, page = open_app(p, app_url)
        page.get_by_role("tab", name="Guided tour").click()
        page.get_by_role("button", name=f"Load: {title}").click()
        expect(page.get_by_role("tab", name="Lab", selected=True)).to_be_visible(timeout=30_000)
        expect(page.get_by_label("Task", exact=True)).to_have_value(TASKS[chosen.task].title, timeout=60_000)
        a_box = page.get_by_label("a: amplification", exact=False).locator("xpath=..").locator("input[type=number]")
        expect(a_box).to_have_value(re.compile(rf"^{chosen.a:g}(\.0+)?$"), timeout=60_000)
        browser.close()
