"""What a visitor sends, read once: images, the defense controls, and errors turned into messages."""
from __future__ import annotations

import functools
import inspect
import logging

import gradio as gr
from PIL import Image

from app.data.images import MAX_SIDE, load_rgb
from app.defense.setting import Setting
from app.study.grid import K_GRID


MAX_BUDGET = 600  # student steps: a public Space must not let one click hold a worker for minutes
MAX_K = max(k for k, _ in K_GRID)  # the search's adaptive cap: every setting it measured fits the k slider
MESSAGE_CHARS = 300  # the longest message a visitor is shown
LOG = logging.getLogger("asvp.ui")
EXPECTED = (ValueError, OSError)  # bad input, which says what is wrong itself (TeacherLoadError is a ValueError)


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


def short_message(e: Exception, limit: int = MESSAGE_CHARS) -> str:
    """An exception as one line a visitor can read: its first line, the middle elided past `limit`
    (long names, values and paths are what makes messages long). EXPECTED errors speak for
    themselves; others say that something failed."""
    text = " ".join((str(e).splitlines() or [""])[0].split())
    if not isinstance(e, EXPECTED):
        text = f"something failed on the server ({type(e).__name__}: {text or 'no detail'}); it keeps serving"
    text = text or type(e).__name__
    return text if len(text) <= limit else text[: limit // 2 - 1] + "…" + text[-(limit - limit // 2):]


def user_errors(fn):
    """The boundary between a visitor and the lab: any failure becomes a short message in the UI and
    the API, the unexpected ones are logged whole, and the server keeps serving."""
    def message(e: Exception) -> gr.Error:
        if isinstance(e, gr.Error):
            return e
        if not isinstance(e, EXPECTED):
            LOG.exception("unexpected failure in %s", fn.__name__)
        return gr.Error(short_message(e))

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - the boundary: nothing reaches a visitor unexplained
                raise message(e) from None
        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - the boundary: nothing reaches a visitor unexplained
            raise message(e) from None
    return call


def read_image(path):
    if not path:
        raise gr.Error("Pick an example or upload an image first.")
    try:
        return load_rgb(path, MAX_SIDE)
    except (OSError, ValueError, Image.DecompressionBombError) as e:  # not an image, corrupt, empty, too big
        raise gr.Error(f"Could not read the image ({type(e).__name__}): upload a PNG, JPEG or WebP photo.") from None
