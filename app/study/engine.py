"""The sweep engine: rows as Ray tasks, streamed into per-teacher CSV files, resumable.

Ray runs embedded on the cores it finds (nothing to set up beyond pip), or joins a cluster given
its address. A row (teacher, setting, attacker, seeds) is one task; the clean-taught students are
tasks of their own, shared by every row with the same attacker, hooked layer and seed. Each CSV
row carries a key (the hash of its full setting, its seed and the teacher's checksum) and the
recipe's fingerprint (app.study.recipe: what the student recipe computes, not the text of its files). A
rerun skips every row whose key is already on file, and drops rows of another fingerprint or other
teacher weights, so an interrupted sweep trains only what is missing.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from app.study.protocol import Row, clean_student_scores, measure
from app.study.recipe import SEARCHED, recipe_of
from app.teachers.registry import bundled, file_stem
from app.teachers.sessions import Source, shared_teacher


ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
CLEAN_SCORES = ("psnr", "ssim", "rms", "fidelity_psnr", "fidelity_ssim")  # a clean-taught student's, as rows hold them


@lru_cache(maxsize=None)
def teacher_checksum(source: Source) -> str:
    """A teacher's weights file, hashed: a retrained or replaced teacher invalidates its rows."""
    weights = (bundled()[source].weights if source in bundled()
               else shared_teacher(source, CPU, None).loaded.weights_file)
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:12]


def _key(what: dict) -> str:
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stamp(task: str, teacher: Source, attackers: tuple[str, ...] = SEARCHED, field: bool = False) -> dict[str, str]:
    """What makes a teacher's rows current: the recipe's fingerprint for their attackers and students, and the
    teacher's weights."""
    return dict(recipe=recipe_of(task, teacher, attackers, field), teacher_sha=teacher_checksum(teacher))


def row_key(row: Row, seed: int) -> str:
    return _key(dict(row={**dataclasses.asdict(row), "pairs": row.pairs.key()}, seed=seed,
                     teacher=teacher_checksum(row.teacher)))


def clean_key(row: Row, seed: int) -> str:
    """What a clean-taught student depends on: rows that agree on it share the student."""
    return _key(dict(task=row.task, teacher=teacher_checksum(row.teacher),
                     defense=dataclasses.asdict(row.defense.clean), attack=dataclasses.asdict(row.attack),
                     pairs=row.pairs.key(), seed=seed))


def _header(path: Path) -> list[str]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


def no_theft_key(task: str, teacher: Source, attack, pairs, seed: int) -> str:
    """What a no-theft row depends on: no teacher answer, but its fidelity is scored against the teacher's."""
    return _key(dict(no_theft=task, attack=dataclasses.asdict(attack), pairs=pairs.key(), seed=seed,
                     teacher=teacher_checksum(teacher)))


def records(frame: pd.DataFrame) -> list[dict]:
    """A CSV's rows as dicts, empty cells None."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


class Store:
    """The per-teacher CSV files of one output folder (sweep_<teacher>.csv, or another `kind`'s): rows on
    file, by key, appended as they come, current while they carry the fingerprint of `attackers` (and field
    students: `field`)."""

    def __init__(self, out: Path, kind: str = "sweep", attackers: tuple[str, ...] = SEARCHED, field: bool = False):
        self.out, self.kind, self.attackers, self.field = out, kind, attackers, field
        self.rows: dict[str, list[dict]] = {}  # teacher -> rows on file

    def stamp(self, task: str, teacher: Source) -> dict[str, str]:
        return stamp(task, teacher, self.attackers, self.field)

    def path(self, teacher: Source) -> Path:
        return self.out / f"{self.kind}_{file_stem(teacher)}.csv"

    def load(self, task: str, teacher: Source, keep_stale: bool = False) -> int:
        """Read a teacher's rows, keeping those of its current weights and student recipe; the
        stale ones leave the file too unless `keep_stale` (a plan only looks). Returns how many were stale."""
        path = self.path(teacher)
        if not path.exists():  # nothing to check (the fingerprint's seeded run is not made for nothing)
            self.rows[teacher] = []
            return 0
        rows = records(pd.read_csv(path))
        fresh = self.stamp(task, teacher)
        self.rows[teacher] = [r for r in rows if all(r.get(k) == v for k, v in fresh.items())]
        stale = len(rows) - len(self.rows[teacher])
        if stale and not keep_stale:  # stale rows go: their teacher or recipe changed
            self.write(teacher, self.rows[teacher])
        return stale

    def done(self, teacher: Source) -> set[str]:
        return {r["key"] for r in self.rows.get(teacher, [])}

    def clean(self, teacher: Source) -> dict[str, dict[str, float]]:
        """Clean-taught students' scores on file, by clean key (a row from before fidelity was measured has
        not all of them: its student trains again for a new row)."""
        return {r["clean_key"]: {m: float(r[f"student_clean_{m}"]) for m in CLEAN_SCORES}
                for r in self.rows.get(teacher, []) if r.get("student_clean_fidelity_psnr") is not None}

    def add(self, teacher: Source, rows: list[dict]) -> None:
        """Append rows to the teacher's file as they arrive (an interrupted sweep keeps them)."""
        self.rows.setdefault(teacher, []).extend(rows)
        self._append(teacher, rows)

    def write(self, teacher: Source, rows: list[dict]) -> None:
        """Replace the teacher's file with `rows`, in their order (no rows: no file)."""
        self.rows[teacher] = list(rows)
        self.path(teacher).unlink(missing_ok=True)
        self._append(teacher, rows)

    def _append(self, teacher: Source, rows: list[dict]) -> None:
        """Append under the file's header; rows with columns it lacks rewrite the file with every column
        (older rows leave the new ones empty)."""
        if not rows:
            return
        path = self.path(teacher)
        header = _header(path)
        columns = list(dict.fromkeys(header + [c for r in rows for c in r]))
        if columns != header and header:
            rows = self.rows[teacher]  # already holds `rows`
            path.unlink()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            if not path.stat().st_size:
                writer.writeheader()
            writer.writerows(rows)


@contextmanager
def ray_session(address: str | None, threads: int):
    """Ray embedded on this machine (address None) or joined to a cluster; each task gets one core
    and `threads` torch threads."""
    import ray

    env, local = {"env_vars": {"OMP_NUM_THREADS": str(threads)}}, {}
    if address is None:  # local workers import the app from this checkout, at the driver's priority
        env["env_vars"]["PYTHONPATH"] = str(ROOT)
        local["_system_config"] = {"worker_niceness": 0}  # Ray's default 15 starves them on a busy machine
    else:  # a cluster's workers get the code shipped, without results or artefacts
        env["working_dir"] = str(ROOT)
        env["excludes"] = [".git", "results", "test-artifacts", ".gradio"]
    ray.init(address=address, runtime_env=env, include_dashboard=False, log_to_driver=False,
             configure_logging=False, **local)
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class Workers:
    """What each Ray task gets: one core with `threads` torch threads, and on CUDA a 1/`per_gpu` share
    of a GPU (a quick student keeps a GPU far from busy, so several tasks share one)."""

    threads: int = 1
    device: torch.device = torch.device("cpu")
    per_gpu: int = 8

    def __post_init__(self):
        if self.threads < 1 or self.per_gpu < 1:
            raise ValueError(f"threads and per_gpu must be >= 1, got {self.threads} and {self.per_gpu}")

    def resources(self) -> dict[str, float]:
        return dict(num_cpus=1, num_gpus=1 / self.per_gpu if self.device.type == "cuda" else 0)

    def remote(self, ray, fn):
        """`fn(*args, device=...)` as a Ray task with these resources."""
        threads, device = self.threads, self.device

        def task(*args):
            torch.set_num_threads(threads)
            return fn(*args, device=device)

        return ray.remote(**self.resources())(task)


def streamed(ray, pending: dict, desc: str, unit: str):
    """(what, result) for each Ray task of `pending` (ref -> what) as it finishes, under a progress bar."""
    with tqdm(total=len(pending), desc=desc, unit=unit) as bar:
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(ready), ray.get(ready)
            bar.update()


def missing_pairs(rows: list[Row], seeds: list[int], store: Store) -> int:
    """How many (row, seed) student pairs of `rows` are not on file in `store`."""
    return sum(row_key(row, seed) not in store.done(row.teacher) for row in rows for seed in seeds)


def run_rows(ray, rows: list[Row], seeds: list[int], store: Store, workers: Workers = Workers(),
             desc: str = "rows") -> list[dict]:
    """Measure every (row, seed) not yet on file as Ray tasks, one each, streaming results into the store as
    they finish; returns the rows of `rows` on file afterwards (old and new). A seed's row reaches the file
    as soon as it is measured, so a stop loses only those in flight (a heavy teacher's row of five seeds is
    half an hour; scoring its defended teacher once a seed instead of once a row costs seconds)."""
    clean_task, row_task = (workers.remote(ray, fn) for fn in (clean_student_scores, measure))
    wanted = {(row, seed): row_key(row, seed) for row in rows for seed in seeds}
    pending, cleans, todo = {}, {}, 0
    for row in rows:
        missing = [seed for seed in seeds if wanted[row, seed] not in store.done(row.teacher)]
        if not missing:
            continue
        on_file, refs = store.clean(row.teacher), {}
        for seed in missing:
            key = clean_key(row, seed)
            if key not in on_file and key not in cleans:
                cleans[key] = clean_task.remote(row, seed)
            refs[seed] = on_file.get(key) or cleans[key]
        for seed in missing:
            pending[row_task.remote(row, [seed], refs[seed])] = (row, seed)
        todo += len(missing)
    with tqdm(total=todo, desc=desc, unit="student pair") as bar:
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            row, seed = pending.pop(ready)
            (measured,) = ray.get(ready)
            store.add(row.teacher, [dict(measured, key=wanted[row, seed], clean_key=clean_key(row, seed),
                                         **store.stamp(row.task, row.teacher))])
            bar.update()
    on_file = {r["key"]: r for teacher in {row.teacher for row in rows} for r in store.rows[teacher]}
    return [on_file[wanted[row, seed]] for row in rows for seed in seeds]  # in the order asked
