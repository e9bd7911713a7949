"""Shared fixtures and constants. Tests run offline: no Hub traffic unless a test points
HF_ENDPOINT at its own loopback server.

Markers (declared in pytest.ini): `browser` drives Debian's chromium, `benchmarks` reads the real
benchmark pairs and skips, with the reason, where they are absent (CI has them, so runs all),
`slow` takes more than about 20 s on 2 cores. `pytest -m "not browser and not slow"` is the quick loop.
"""
import atexit
import os
import shutil
import socket
import tempfile


os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ["ASVP_DEVICE"] = "cpu"  # the app's sessions stay on the CPU, also where a GPU is present
KEPT = tempfile.mkdtemp(prefix="asvp-kept-")  # teacher passes and students the tests file stay theirs
os.environ["ASVP_PASSES"], os.environ["ASVP_STUDENTS"] = f"{KEPT}/passes", f"{KEPT}/students"
atexit.register(shutil.rmtree, KEPT, ignore_errors=True)  # and go with the process

import pytest  # noqa: E402
import torch  # noqa: E402

from app.data.benchmarks import BENCHMARKS  # noqa: E402


torch.set_num_threads(2)

def pytest_collection_modifyitems(config, items):
    """Files with slow or browser tests first: the suite's two workers (pytest-xdist, a file each at a time)
    then end together rather than one waiting for the other's last long file."""
    heavy = {item.path for item in items if "slow" in item.keywords or "browser" in item.keywords}
    items.sort(key=lambda item: item.path not in heavy)  # a stable sort: the order within each group stays
    if BENCHMARKS.is_dir():
        return
    skip = pytest.mark.skip(reason=f"benchmark pairs not found at {BENCHMARKS}: set ASVP_BENCHMARKS")
    for item in items:
        if "benchmarks" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def app_url():
    """The app, launched once on a free loopback port for every UI test."""
    from app.ui.demo import CSS, build_demo

    demo = build_demo()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, css=CSS)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)
