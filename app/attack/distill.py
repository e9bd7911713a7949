"""The attacker: distil a quick student from the answers of a (defended or clean) teacher.

The attacker owns degraded images but no ground truth (disjoint from the teacher's training
images and from the benchmarks); it queries the teacher and fits a small student to the answers.
`distill` is a generator of progress events so a UI can stream it; with one seed, the clean- and
the defended-taught students see the same queries, initial weights and batch order.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state

from app.attack.features import exposed_from_clean
from app.attack.field import FieldStudent
from app.attack.informed import affinity, unamplified
from app.attack.resume import Resumable, file_state, resumed
from app.data.sources import ATTACKER_IMAGES, PairPool
from app.defense.asvp import FeatureRecord, defend
from app.defense.setting import Setting
from app.devices import device_of
from app.teachers.networks import QuickStudent, upsample_input
from app.teachers.seeding import GLOBAL_DRAWS


ATTACKS = ("output", "feature", "fitnet", "adaptive")
LOSSES = ("l1", "l2")
FEATURE_LOSSES = ("l1", "mse", "affinity", "asvp-aware")  # the last two: attackers who know the defense
MAX_STEPS = 10_000  # the sweep's budget curve trains students far past the app's budget
FIELD_STEPS = MAX_STEPS  # a field student's budget: a thief who trains as the field does
MAX_DEPTH = 12  # a quick student stays quick


@dataclass(frozen=True)
class Attack:
    """Threat model and budget.

    `output`: the pixel `loss` (L1, or L2 for an attacker that scores itself by PSNR) to the
    teacher's answers (black box). `feature`: plus `feature_weight` times the `feature_loss` (L1 or
    MSE) between an adapter of the student's hidden map and the teacher's feature at each hooked
    layer; with `normalise`, both maps are standardised per image and channel first (an attacker
    who expects the features' scale to be tampered with). Two feature losses know ASVP itself
    (app.attack.informed): `affinity` matches which positions go together, not the maps, and
    `asvp-aware` puts the teacher's amplified singular values back before an L1 match. `fitnet`:
    FitNet's two stages, the feature (hint) loss alone for the first `hint_share` of the steps, then
    the pixel loss alone.
    `adaptive`: knows a defense may be on: fits a low-passed copy of the answers (`lowpass_sigma`
    px; 0 keeps them sharp, as an SR attacker must, since the detail it buys is high-frequency too)
    with the pixel loss trimmed of its worst-fitting `trim` fraction of pixels. `depth`, `dilated`
    and `leak` shape the student (see QuickStudent); each task names the attacker it expects
    (app.attack.attackers).
    """

    kind: str = "output"
    steps: int = 150
    batch: int = 8
    patch: int = 48  # student input side; the teacher's answer is `scale` times larger for SR
    queries: int = 96
    variants: int = 8  # degraded versions of each query image: more haze, light, water, rain draws
    lr: float = 4e-3
    feature_weight: float = 0.1
    feature_loss: str = "l1"
    normalise: bool = False
    hint_share: float = 0.5
    lowpass_sigma: float = 1.0
    trim: float = 0.2
    depth: int = 4
    dilated: bool = True
    leak: float = 0.0
    loss: str = "l1"

    @property
    def reads_features(self) -> bool:
        """Whether this attacker is handed the teacher's features (else it sees answers only)."""
        return self.kind in ("feature", "fitnet")

    @property
    def label(self) -> str:
        """The threat model in a few words (a sweep's attacker column)."""
        norm = ", normalised" if self.normalise else ""
        if self.kind == "output":
            return f"output {self.loss.upper()}"
        if self.kind == "fitnet":
            return f"FitNet {self.feature_loss.upper()}{norm}"
        if self.kind == "feature":
            return f"feature {self.feature_loss.upper()} x{self.feature_weight:g}{norm}"
        return "adaptive"

    @property
    def hint_steps(self) -> int:
        """Steps of FitNet's first stage (hint loss alone); 0 for every other attacker."""
        return round(self.steps * self.hint_share) if self.kind == "fitnet" else 0

    @property
    def student(self) -> str:
        """The student's shape and loss in words, for reports."""
        convs = "dilated" if self.dilated else "plain"
        act = f"LeakyReLU {self.leak:g}" if self.leak else "ReLU"
        return f"{self.depth} layers, {convs} convs, {act}, {self.loss.upper()} loss"

    def __post_init__(self):
        if self.kind not in ATTACKS:
            raise ValueError(f"unknown attacker {self.kind!r}; choose one of {', '.join(ATTACKS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.feature_loss not in FEATURE_LOSSES:
            raise ValueError(f"unknown feature loss {self.feature_loss!r}; choose one of {', '.join(FEATURE_LOSSES)}")
        if not self.feature_weight > 0:
            raise ValueError(f"feature_weight must be > 0, got {self.feature_weight}")
        if not 0 < self.hint_share < 1:
            raise ValueError(f"hint_share must be in (0, 1): FitNet needs both stages, got {self.hint_share}")
        if not 2 <= self.depth <= MAX_DEPTH:
            raise ValueError(f"student depth must be 2..{MAX_DEPTH} conv layers, got {self.depth}")
        if self.lowpass_sigma < 0:
            raise ValueError(f"lowpass_sigma must be >= 0 (0: no low-pass), got {self.lowpass_sigma}")
        if not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"student budget must be 1..{MAX_STEPS} steps, got {self.steps}")

    def new_student(self, scale: int) -> nn.Module:
        """A fresh student for a task of this scale (its weights drawn from torch's current seed)."""
        return QuickStudent(depth=self.depth, scale=scale, dilated=self.dilated, leak=self.leak)

    @property
    def stacks(self) -> bool:
        """Whether students of this attacker can step as one under vmap (`distill`'s `stacked`)."""
        return True


@dataclass(frozen=True)
class FieldAttack(Attack):
    """The same threat model with a field architecture as the student (app.attack.field), trained for long:
    a thief who means it. `depth`, `dilated` and `leak` shape no field student. Its own class, so that rows
    of quick students keep their keys (a row's key hashes its attacker's fields)."""

    steps: int = FIELD_STEPS
    field: str = "compact for SR, NAFNet otherwise"

    @classmethod
    def of(cls, quick: Attack, scale: int) -> FieldAttack:
        """The quick attacker `quick` (its threat model, queries and budget) with the field student of a task of
        `scale`, at that student's learning rate."""
        return cls(**{**dataclasses.asdict(quick), "lr": FieldStudent.learning_rate(scale, quick.lr)})

    @property
    def student(self) -> str:
        return f"field student ({self.field}), {self.loss.upper()} loss"

    def new_student(self, scale: int) -> nn.Module:
        return FieldStudent(scale)

    @property
    def stacks(self) -> bool:
        return False  # NAFNet's layer norm is a custom autograd function, which vmap does not batch


@dataclass
class Progress:
    """One report of a batch of students: per student, the pixel and feature losses of the last step."""

    step: int
    total: int
    losses: list[float]
    feature_losses: list[float]
    students: list[nn.Module]  # a copy of each student as it is at this step


class Pupil(nn.Module):
    """One student with the adapters (one per hooked teacher layer) a feature-KD attacker maps its
    hidden map through, each at the size its hint is compared at (`hints`: (channels, size) per layer)."""

    def __init__(self, attack: Attack, scale: int, hints: list[tuple[int, tuple[int, int]]]):
        super().__init__()
        self.student = attack.new_student(scale)
        width = self.student.width
        self.adapters = nn.ModuleList(nn.Conv2d(width, c, 1) for c, _ in hints)
        self.sizes = [size for _, size in hints]

    def forward(self, x, adapt: bool):
        """The student's residual in sub-pixel layout (QuickStudent.residual), and with `adapt` the
        hidden map of the same pass pooled to each hint's size, then through its adapter (a 1x1 conv
        commutes with average pooling, so pooling first gives the same map for a fraction of the work)."""
        hidden = self.student.features(x)
        out = self.student.residual(hidden)
        if not adapt:
            return out
        return out, [adapter(pooled(hidden, size)) for adapter, size in zip(self.adapters, self.sizes)]


def pooled(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`x` (B x C x H x W) average-pooled to `size`: a plain pool where one integer factor divides both
    sides (its backward is far faster than the adaptive pool's, in either memory layout)."""
    (h, w), (sh, sw) = x.shape[-2:], size
    if (h, w) == (sh, sw):
        return x
    if h % sh == 0 and w % sw == 0 and h // sh == w // sw:
        return F.avg_pool2d(x, h // sh)
    return F.adaptive_avg_pool2d(x, size)


def hint_sizes(side: int, maps: list[torch.Tensor]) -> list[tuple[int, int]]:
    """Where a student's hidden map (side x side) and each teacher map meet: the smaller of the two
    sizes, so the larger map is averaged down and nothing is upsampled."""
    return [(min(side, m.shape[-2]), min(side, m.shape[-1])) for m in maps]


@lru_cache(maxsize=32)
def query_pairs(task, queries: int, patch: int, variants: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The attacker's own degraded patches (N x 3 x p x p) and the clean patches it degraded them from
    (N x 3 x sp x sp), reproducible from the seed (cached: both students of a pair, and every setting of a
    sweep, ask with the same ones)."""
    pool = PairPool(task, ATTACKER_IMAGES, variants=variants, seed=seed)
    return pool.batch(np.random.default_rng(seed), queries, patch)


def query_images(task, queries: int, patch: int, variants: int, seed: int) -> torch.Tensor:
    """The attacker's degraded patches alone: what it sends the teacher."""
    return query_pairs(task, queries, patch, variants, seed)[0]


def attacker_queries(task, attack: Attack, seed: int) -> torch.Tensor:
    """The queries one attacker sends for one seed (cached by `query_pairs`)."""
    return query_images(task, attack.queries, attack.patch, attack.variants, seed)


@torch.no_grad()
def ask_teacher(teacher: nn.Module, x: torch.Tensor, defense: Setting, chunk: int = 32):
    """The teacher's answers, and its (exposed) features at each hooked layer, for every query, in chunks."""
    answers, feats = [], {name: [] for name in defense.layers}
    for part in x.split(chunk):
        record = FeatureRecord()
        with defend(teacher, defense, record):
            answers.append(teacher(part.to(device_of(teacher))))
        for name, seen in feats.items():
            seen.append(record.exposed[name])
    return torch.cat(answers), [torch.cat(seen) for seen in feats.values()]


def feature_loss(hidden: torch.Tensor, target: torch.Tensor, attack: Attack) -> torch.Tensor:
    """The hint loss at one layer: the adapted hidden map against the teacher's map, both at the
    hint's size (both standardised per image and channel when the attacker normalises)."""
    if attack.normalise:
        hidden, target = F.instance_norm(hidden), F.instance_norm(target)
    if attack.feature_loss == "affinity":
        return F.mse_loss(affinity(hidden), affinity(target))
    return F.mse_loss(hidden, target) if attack.feature_loss == "mse" else F.l1_loss(hidden, target)


def gaussian_lowpass(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur: strips the high-frequency part of a perturbation (and of detail)."""
    radius = max(1, int(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=img.dtype, device=img.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k, c = k / k.sum(), img.shape[1]
    img = F.conv2d(F.pad(img, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(img, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
                    groups=c)


def pixel_loss(pred: torch.Tensor, target: torch.Tensor, loss: str, trim: float = 0.0) -> torch.Tensor:
    """Mean L1 or L2 error; with `trim` > 0 only over the (1 - trim) best-fitting pixels, so that
    outliers injected by a defense get no say (the adaptive attacker's robust loss). Images or their
    sub-pixel layout (colour-major channels) give the same loss: a pixel's error is its three
    colours' mean either way."""
    if not trim:
        return F.l1_loss(pred, target) if loss == "l1" else F.mse_loss(pred, target)
    diff = pred - target
    err = (diff.abs() if loss == "l1" else diff.square()).unflatten(1, (3, -1)).mean(1).flatten()
    keep = max(1, int(err.numel() * (1 - trim)))
    return err.topk(keep, largest=False).values.mean()


@dataclass
class Answered:
    """What one seed's attacker got from a teacher: its queries, the answers and the (exposed) features at
    each hooked layer. Students train on it (`taught`); a study also measures how far the served answers moved."""

    seed: int
    queries: torch.Tensor
    answers: torch.Tensor
    features: list[torch.Tensor]


def asked(teacher: nn.Module, task, defense: Setting, attack: Attack, seed: int) -> Answered:
    """The attacker's queries for `seed`, sent to the teacher under `defense`."""
    return answered(teacher, attacker_queries(task, attack, seed), defense, seed)


def answered(teacher: nn.Module, x: torch.Tensor, defense: Setting, seed: int) -> Answered:
    """Seed `seed`'s queries `x`, sent to the teacher under `defense` (the students train where it runs)."""
    x = x.to(device_of(teacher))
    return Answered(seed, x, *ask_teacher(teacher, x, defense))


def exposed_answered(clean: Answered, defense: Setting) -> Answered:
    """What the exposed setting `defense` serves, made from what its clean setting served: the answers untouched, the
    maps at its layers amplified as its hooks would amplify them (exposed_from_clean, bit for bit): no teacher pass."""
    return Answered(clean.seed, clean.queries, clean.answers, exposed_from_clean(clean.features, defense))


def distill(teacher: nn.Module, task, runs: list[tuple[Setting, int]], attack: Attack,
            every: int = 10, stacked: bool | None = None) -> Iterator[Progress]:
    """Train one student per (defense, seed) run on the teacher's answers, all in one pass; yield
    progress once the teacher has answered, then every `every` steps and at the end (`taught`)."""
    yield from taught(task, [asked(teacher, task, defense, attack, seed) for defense, seed in runs], attack,
                      every, stacked)


def taught(task, runs: list[Answered], attack: Attack, every: int = 10, stacked: bool | None = None,
           resumable: Resumable | None = None) -> Iterator[Progress]:
    """Train one student per run on answers already asked, all in one pass. Each student sees its seed's
    queries, initial weights and batch order, so it equals the same student trained alone, and the clean- and
    defended-taught students of one seed form a fair pair.

    `stacked` (default: on an accelerator, for more than one run) steps all students as one: their
    weights stacked under torch.func.vmap, every convolution one grouped kernel, equal to the lone
    student within float rounding. Otherwise the students step one after another in channels-last
    layout, bit for bit what each computes alone: on a CPU a grouped kernel is slower than that, and
    channels-last beats contiguous students for the dilated family (python -m app.bench times both).

    With `resumable`, the run files its state as it goes and, given a filed state of itself, goes on from there
    (app.attack.resume): its first progress is then the step it resumed at.
    """
    ys, feats = [], []
    for run in runs:
        y, t_feat = run.answers, run.features
        if attack.feature_loss == "asvp-aware":  # matched with L1 once its amplified directions are put back
            t_feat = [unamplified(f) for f in t_feat]
        if attack.kind == "adaptive" and attack.lowpass_sigma > 0:
            y = gaussian_lowpass(y, attack.lowpass_sigma)
        ys.append(subpixel_residual(y, run.queries, task.scale)), feats.append(t_feat)
    yield from _train(task, [run.seed for run in runs], attack, [run.queries for run in runs], ys, feats, every,
                      stacked, resumable)


def alone(attack: Attack) -> Attack:
    """The attacker without a teacher: its student, queries, budget and pixel loss, and nothing that reads,
    low-passes or trims a teacher's answers (attackers that differ only there train the same no-theft student)."""
    plain = Attack()
    return dataclasses.replace(attack, kind="output", **{f: getattr(plain, f) for f in (
        "feature_weight", "feature_loss", "normalise", "hint_share", "lowpass_sigma", "trim")})


def no_theft(task, attack: Attack, seeds: list[int], every: int = 10,
             device: torch.device = torch.device("cpu")) -> Iterator[Progress]:
    """The thief who steals nothing: the task's degradation model is public and the attacker owns clean
    images, so it fits the same student, with the same degraded queries, initial weights, batch order and
    budget, to the clean patches it degraded them from, and never asks a teacher. What theft is worth is
    the clean-taught student's gain over this one. It fits the outputs with the attacker's pixel loss (no
    teacher: no features to match, no answers to low-pass or trim)."""
    own = alone(attack)
    xs, ys = [], []
    for seed in seeds:
        x, y = (t.to(device) for t in query_pairs(task, own.queries, own.patch, own.variants, seed))
        xs.append(x), ys.append(subpixel_residual(y, x, task.scale))
    yield from _train(task, seeds, own, xs, ys, [[] for _ in seeds], every, stacked=None)


def _train(task, seeds: list[int], attack: Attack, xs: list[torch.Tensor], ys: list[torch.Tensor],
           feats: list[list[torch.Tensor]], every: int, stacked: bool | None,
           resumable: Resumable | None = None) -> Iterator[Progress]:
    """One student per seed, fitted to its targets `ys` (sub-pixel residuals) and features `feats` (per
    run, one map per hooked layer): `distill`'s training, whatever the targets came from."""
    device = xs[0].device
    sizes = hint_sizes(attack.patch, feats[0])  # the teacher's maps are pooled down once, here, not every step
    feats = [[pooled(f, size) for f, size in zip(t_feat, sizes)] for t_feat in feats]
    pupils = []
    for seed, t_feat in zip(seeds, feats):
        with GLOBAL_DRAWS:  # students made at once in several threads (clicks, twins) draw in turn
            torch.manual_seed(seed)
            pupil = Pupil(attack, task.scale, [(f.shape[1], size) for f, size in zip(t_feat, sizes)])
        pupils.append(pupil.to(device))
    feature_kd = attack.reads_features
    if stacked is None:
        stacked = device.type != "cpu" and len(seeds) > 1 and attack.stacks
    step, params, students = (_stacked if stacked else _interleaved)(pupils, feature_kd)
    trains = lambda name: feature_kd or name.startswith("student.")  # adapters serve feature KD only
    opt = torch.optim.Adam([p for name, p in params if trains(name)], lr=attack.lr)  # elementwise: one
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=attack.steps, eta_min=attack.lr / 20)  # Adam each
    orders = [torch.Generator().manual_seed(seed) for seed in seeds]
    nan = [float("nan")] * len(seeds)
    start = resumed(resumable, params, opt, sched, orders, attack.steps) if resumable else 0
    yield Progress(start, attack.steps, nan, nan, students())  # the teacher has answered (or the run resumed)
    for now in range(start + 1, attack.steps + 1):
        idx = [torch.randint(len(x), (attack.batch,), generator=order) for x, order in zip(xs, orders)]
        preds, hidden = step([x[i] for x, i in zip(xs, idx)])
        fits = [pixel_loss(pred, y[i], attack.loss, attack.trim if attack.kind == "adaptive" else 0.0)
                for pred, y, i in zip(preds, ys, idx)]
        feat_losses = [sum(feature_loss(h, t[i], attack) for h, t in zip(maps, layers)) if feature_kd
                       else torch.zeros(()) for maps, layers, i in zip(hidden, feats, idx)]
        if now <= attack.hint_steps:  # FitNet's first stage: the hint alone
            loss = sum(feat_losses)
        elif attack.kind == "fitnet":  # its second: the outputs alone
            loss = sum(fits)
        else:
            loss = sum(fit + attack.feature_weight * f for fit, f in zip(fits, feat_losses))  # students share no weight
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if resumable and (now % resumable.every == 0 or now == attack.steps):
            file_state(resumable, now, attack.steps, params, opt, sched, orders)
        if now % every == 0 or now == attack.steps:
            yield Progress(now, attack.steps, [f.item() for f in fits], [f.item() for f in feat_losses], students())


def _interleaved(pupils: list[Pupil], feature_kd: bool):
    """Students one after another, channels-last (the CPU's fast layout for these thin convs).

    Returns the step (a batch per student -> (residuals, hidden maps), one per student; without
    feature KD the hidden maps are placeholders), the named leaves and a snapshot of the students."""
    pupils = [p.to(memory_format=torch.channels_last) for p in pupils]
    layout = lambda x: x.contiguous(memory_format=torch.channels_last)

    def forward(batches):
        outs = [pupil(layout(x), feature_kd) for pupil, x in zip(pupils, batches)]
        return ([o[0] for o in outs], [o[1] for o in outs]) if feature_kd else (outs, batches)

    students = lambda: [copy.deepcopy(p.student).to(memory_format=torch.contiguous_format) for p in pupils]
    return forward, [(name, p) for pupil in pupils for name, p in pupil.named_parameters()], students


def _stacked(pupils: list[Pupil], feature_kd: bool):
    """Students as one: stacked weights under vmap, each convolution a grouped kernel over all
    (returns what `_interleaved` does)."""
    weights, buffers = stack_module_state(pupils)  # name -> (runs, *shape), leaves that train
    blank = copy.deepcopy(pupils[0]).to("meta")

    def run(w, b, x):  # (residual, adapted hidden maps); without feature KD the second is a placeholder
        out = functional_call(blank, (w, b), (x,), {"adapt": feature_kd})
        return out if feature_kd else (out, x)

    batched = torch.vmap(run)

    def forward(batches):
        out, hidden = batched(weights, buffers, torch.stack(batches))  # (runs, B, ...) each
        return out, ([[h[n] for h in hidden] for n in range(len(pupils))] if feature_kd else hidden)  # per student

    students = lambda: [_unstack(pupils[0].student, weights, n) for n in range(len(pupils))]
    return forward, list(weights.items()), students


def _unstack(like: QuickStudent, weights: dict[str, torch.Tensor], n: int) -> QuickStudent:
    """Student `n` of a stack, as a module of its own."""
    student = copy.deepcopy(like)
    student.load_state_dict({k.removeprefix("student."): v[n].detach().clone()
                             for k, v in weights.items() if k.startswith("student.")})
    return student


def subpixel_residual(answers: torch.Tensor, queries: torch.Tensor, scale: int) -> torch.Tensor:
    """What a student's residual (QuickStudent.residual) must fit: the answers less the upsampled
    queries, unshuffled into sub-pixel layout (B x 3*scale^2 x H x W). The loss on it is the loss on
    the images, element for element, without a pixel shuffle forward and backward every step."""
    return F.pixel_unshuffle(answers - upsample_input(queries, scale), scale)

