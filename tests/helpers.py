"""Helpers the tests share (fixtures are in conftest.py): paths, the browser, small students."""
from pathlib import Path

import torch


ROOT = Path(__file__).resolve().parent.parent
COFFEE = ROOT / "assets" / "coffee.png"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def open_app(p, app_url: str, width: int = 1440, height: int = 900):
    """Chromium on the app, once its first look has landed: (browser, page)."""
    from playwright.sync_api import expect

    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(app_url)
    expect(page.get_by_text("teacher + ASVP: ")).to_be_visible(timeout=60_000)
    return browser, page


SMALL_RUN = dict(steps=6, queries=12, batch=4, patch=32)  # an attacker's budget that trains in a second


def weights(model) -> torch.Tensor:
    """Every parameter of a model, flattened into one vector (to compare students)."""
    return torch.cat([p.detach().flatten() for p in model.parameters()])
