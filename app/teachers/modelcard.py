"""Model cards for bundled teachers: the recipe at training time, measured quality from evaluate."""
from __future__ import annotations

import json
import re
from pathlib import Path


QUALITY_START, QUALITY_END = "<!-- quality:start -->", "<!-- quality:end -->"

CARD = """---
license: mit
library_name: pytorch
tags: [image-restoration, asvp-lab, {task}]
---
# ASVP Lab teacher: {title}, {family}

A small {family} restoration teacher (`{cls}`, {params:,} parameters, {mb:.1f} MB in float32) for
the ASVP Lab, a lab for testing runtime defenses against knowledge-distillation theft.

## Training
- Data: permissively licensed clean images bundled with scikit-image (public domain / CC0) and the
  sporco wheel (BSD-3): {images}. No benchmark image was used.
- Degradation: `app.data.tasks.TASKS["{task}"].degrade` (seeded, synthetic: {doc})
- Recipe: `{recipe}`
- Command: `{command}` ({minutes:.0f} min wall time on a shared 2-core CPU)
- Log: `train.log` beside this card.

## Measured quality
{quality_start}
Not measured yet: run `python -m app.evaluate --write-cards`.
{quality_end}

## Licence
Weights: MIT (trained here). Architecture code: {licence} ({upstream}){loader}.
"""


def write_card(folder: Path, task, family, cls: str, recipe: dict, params: int, train_minutes: float) -> None:
    """A card for a freshly trained teacher of `family` (app.teachers.families.Family)."""
    from app.data.sources import TEACHER_IMAGES

    doc = (task.degrade.__doc__ or task.title).strip().splitlines()[0]
    loader = ", loaded through spandrel (MIT)" if cls != "UNetTeacher" else ""
    (folder / "README.md").write_text(CARD.format(
        task=task.name, title=task.title, family=family.title, cls=cls, licence=family.licence,
        upstream=family.upstream, loader=loader, params=params, mb=params * 4 / 1e6, images=", ".join(TEACHER_IMAGES),
        doc=doc, recipe=json.dumps(recipe),
        command="python -m app.train " + " ".join(f"--{k} {v}" for k, v in recipe.items()), minutes=train_minutes,
        quality_start=QUALITY_START, quality_end=QUALITY_END))


def write_quality(folder: Path, markdown: str) -> None:
    """Replace the measured-quality block of a card with freshly measured text."""
    card = folder / "README.md"
    block = f"{QUALITY_START}\n{markdown.strip()}\n{QUALITY_END}"
    pattern = re.escape(QUALITY_START) + ".*?" + re.escape(QUALITY_END)
    card.write_text(re.sub(pattern, lambda _: block, card.read_text(), flags=re.S))


def read_quality(card: str) -> str:
    """The measured-quality block of a card's text (what the app shows next to a loaded teacher)."""
    m = re.search(re.escape(QUALITY_START) + "(.*?)" + re.escape(QUALITY_END), card, flags=re.S)
    return m.group(1).strip() if m else "No measured quality in the model card."
