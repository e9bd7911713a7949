"""A real browser (Debian's chromium via Playwright) uses the app as a person would."""
import re
import zipfile

import pytest
from helpers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, open_app
from playwright.sync_api import expect, sync_playwright

from app.data.tasks import TASKS
from app.lab import looks
from app.lab.presets import preset
from app.teachers import registry
from app.teachers.families import FAMILIES
from app.ui.inputs import MESSAGE_CHARS


pytestmark = [pytest.mark.browser, pytest.mark.slow]
def test_pick_a_field_teacher_move_k_distill(app_url):
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        page.goto(app_url)
        expect(page.get_by_text("degraded with the dehazing model")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("input: ")).to_be_visible(timeout=60_000)
        # a cached example first: replaying it once broke the session's later looks (an image update in the cache)
        page.get_by_text("Dehazing · ").click()
        expect(page.get_by_text("degraded with the dehazing model")).to_be_visible(timeout=60_000)
        # a real-family teacher: the bundled NAFNet, hooked by default at the end of its decoder
        page.get_by_label("Teacher", exact=True).click()
        page.get_by_role("option", name="NAFNet", exact=True).click()
        page.get_by_role("button", name="Load teacher").click()
        page.get_by_text("More defense settings").click()  # folded under Distill
        start = preset("dehaze", FAMILIES["NAFNet"]).defense.layers[0]  # its swept start, or the family's hook
        expect(page.get_by_label("Hooked layer", exact=False)).to_have_value(re.compile("^" + re.escape(start)),
                                                                            timeout=60_000)
        k_box = page.get_by_label("k: singular values amplified", exact=False).locator("xpath=..").locator(
            "input[type=number]")
        k_box.fill("3")
        k_box.press("Enter")
        expect(page.get_by_text("top-3")).to_be_visible(timeout=60_000)  # the spectra plot marks the new k
        expect(page.get_by_text("teacher + ASVP: ")).to_be_visible()  # its metrics, under the image
        expect(page.locator(".toast-body")).to_have_count(0)  # no error anywhere on the way
        page.get_by_text("Attacker and seed").click()  # folded under Distill
        page.get_by_label("Student budget (steps)", exact=False).locator("xpath=..").locator(
            "input[type=number]").fill("30")
        page.get_by_role("button", name="Distill").click()
        expect(page.get_by_text("Verdict.")).to_be_visible(timeout=180_000)
        verdict = page.get_by_text("Verdict.").locator("xpath=..").inner_text()
        assert "student" in verdict or "no verdict" in verdict
        table = page.inner_text("body")
        assert "student (defended teacher)" in table and "student (clean teacher)" in table
        assert re.search(r"student \(defended teacher\)\s+\d+\.\d{2}\s+0\.\d{4}", table)  # with its PSNR, SSIM
        with page.expect_download() as got:  # the session to take away
            page.get_by_role("button", name=re.compile("Download this session")).click()
        with zipfile.ZipFile(got.value.path()) as bundle:
            assert "student (defended teacher)" in bundle.read("metrics.csv").decode()
            assert bundle.read("verdict.md").decode().startswith("**Verdict.**")
        page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
        browser.close()
    assert (ARTIFACTS / "app.png").stat().st_size > 10_000


def test_at_1440x900_distill_is_on_screen_and_no_caption_is_cut(app_url):
    with sync_playwright() as p:
        browser, page = open_app(p, app_url)
        for name in ("Task", "k: singular values amplified", "a: amplification"):
            assert page.get_by_label(name, exact=False).first.bounding_box()["y"] < 900, name
        box = page.get_by_role("button", name="Distill").bounding_box()
        assert box["y"] + box["height"] <= 900  # reachable without scrolling
        captions = page.locator(".prose", has_text=re.compile(r"dB / SSIM"))
        assert captions.count() >= 3
        for i in range(captions.count()):  # every metric caption fits its box: nothing is cut off
            width = captions.nth(i).evaluate("e => [e.scrollWidth, e.clientWidth, e.innerText]")
            assert width[0] <= width[1], width[2]
        column = box["x"] + box["width"]  # the controls' column, as wide as its Distill button
        for t in TASKS.values():  # each example's name fits the column
            named = page.get_by_text(f"{t.title} · ").bounding_box()
            assert named["x"] + named["width"] <= column, t.title
        page.screenshot(path=str(ARTIFACTS / "one-screen.png"))
        label, task = max(((label, task) for task in TASKS for label, _ in registry.teacher_choices(task)),
                          key=lambda choice: len(choice[0]))
        page.get_by_label("Task", exact=True).click()
        page.get_by_role("option", name=TASKS[task].title, exact=True).click()
        teacher = page.get_by_label("Teacher", exact=True)
        expect(teacher).to_have_value(registry.teacher_choices(task)[0][0], timeout=60_000)
        teacher.click()
        page.get_by_role("option", name=label, exact=True).click()
        width = teacher.evaluate("e => [e.scrollWidth, e.clientWidth, e.value]")
        assert width[0] <= width[1] and width[2] == label  # the longest teacher name is shown whole
        browser.close()


def test_the_about_tabs_answer_table_breaks_lines_between_words_only(app_url):
    with sync_playwright() as p:
        browser, page = open_app(p, app_url)
        page.get_by_role("tab", name="About").click()
        cells = page.locator(".prose table td")
        expect(cells.first).to_be_visible(timeout=30_000)
        broken = cells.evaluate_all("""cells => cells.filter(c => c.innerText.trim() && !/\\s/.test(c.innerText.trim()))
            .filter(c => { const r = document.createRange(); r.selectNodeContents(c);
                           return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size > 1; })
            .map(c => c.innerText)""")
        assert cells.count() > 20 and broken == []  # a one-word cell sits on one line
        browser.close()


def test_an_unexpected_failure_inside_a_look_shows_the_visitor_its_message(app_url, monkeypatch):
    """Gradio shows an exception it was not handed as a bare "Error": the boundary's message must reach the page."""
    def broken(*args):
        raise KeyError("x" * 5000)  # no type the lab expects, and a long detail

    with sync_playwright() as p:
        browser, page = open_app(p, app_url)
        monkeypatch.setattr(looks, "look", broken)
        k_box = page.get_by_label("k: singular values amplified", exact=False).locator("xpath=..").locator(
            "input[type=number]")
        k_box.fill("5")
        k_box.press("Enter")
        toast = page.locator(".toast-body").first
        expect(toast).to_contain_text("something failed on the server (KeyError: 'x", timeout=60_000)
        expect(toast).to_contain_text("it keeps serving")
        assert len(toast.inner_text()) < 2 * MESSAGE_CHARS
        monkeypatch.undo()
        k_box.fill("4")
        k_box.press("Enter")
        expect(page.get_by_text("top-4")).to_be_visible(timeout=60_000)  # the next look is served
        browser.close()
