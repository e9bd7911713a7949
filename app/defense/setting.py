"""One defense setting, and the one place each outside form of it is read and written: a shared
link's query, a row of the search's files, the Lab's controls and the defaults file (a one-layer entry)."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


LAYOUTS = ("channel", "spatial")
PLACEMENTS = ("inline", "exposed")
DIRECTIONS = ("top", "bottom", "random")
MAX_A = 100.0  # beyond this the "defense" just destroys the teacher


@dataclass(frozen=True)
class Setting:
    """One defense setting (frozen: it keys caches and rows).

    k: how many singular directions to amplify (clamped to each map's numerical rank).
    a: the factor on their singular values (a < 1 attenuates; 1 is the identity).
    tau: adaptive k: per map, the smallest k whose singular values hold a share tau of the energy
        sum(s_i^2); `k` stays an upper cap, so set k large to let tau alone decide.
    layout: "channel" (C x HW per image) or "spatial" (H x W per channel).
    placement: "inline" (the served output changes) or "exposed" (only the features handed to a
        feature-KD attacker change).
    directions: "top" (ASVP), or the baselines "bottom" / "random" (seeded by `seed`).
    k = 0 or a = 1 leaves features untouched, bit for bit.
    """

    k: int = 1
    a: float = 1.5
    layout: str = "channel"
    tau: float | None = None
    placement: str = "inline"
    layers: tuple[str, ...] = ("mid",)
    directions: str = "top"
    seed: int = 0

    def __post_init__(self):
        layers = (self.layers,) if isinstance(self.layers, str) else tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        if isinstance(self.k, bool) or not isinstance(self.k, numbers.Integral) or self.k < 0:
            raise ValueError(f"k must be a whole number >= 0, got {self.k!r}")
        if isinstance(self.a, bool) or not isinstance(self.a, numbers.Real) or not math.isfinite(self.a) \
                or not 0 < self.a <= MAX_A:
            raise ValueError(f"a must be a finite number in (0, {MAX_A:g}], got {self.a!r}")
        if self.tau is not None and (isinstance(self.tau, bool) or not isinstance(self.tau, numbers.Real)
                                     or not 0 < self.tau <= 1):
            raise ValueError(f"tau must be None or a number in (0, 1], got {self.tau!r}")
        for name, value, allowed in (("layout", self.layout, LAYOUTS), ("placement", self.placement, PLACEMENTS),
                                     ("directions", self.directions, DIRECTIONS)):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
        if not layers or not all(isinstance(n, str) and n for n in layers):
            raise ValueError(f"layers must name at least one submodule, got {self.layers!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise ValueError(f"seed must be a whole number, got {self.seed!r}")

    @property
    def is_identity(self) -> bool:
        return self.k == 0 or self.a == 1

    @property
    def clean(self) -> Setting:
        """The undefended twin: the same hooked layers, nothing amplified. Every setting at those
        layers shares it, so they share their clean-taught students (and the identity serves the
        features and the answers untouched, bit for bit)."""
        return Setting(a=1.0, layers=self.layers)

    def entry(self) -> dict:
        """A one-layer setting as the defaults file, a search summary's pick and a link hold it."""
        return dict(layer=self.layers[0], layout=self.layout, k=self.k, a=self.a, tau=self.tau,
                    placement=self.placement)

    @classmethod
    def from_entry(cls, entry: dict) -> Setting:
        """The inverse of `entry` (ValueError on a field it does not hold: a file of another version)."""
        if unknown := sorted(set(entry) - set(Setting().entry())):
            raise ValueError(f"a setting has no field {', '.join(map(repr, unknown))}")
        return cls(layers=(entry["layer"],), layout=entry.get("layout", "channel"), k=entry["k"], a=entry["a"],
                   tau=entry.get("tau"), placement=entry.get("placement", "inline"))

    def query(self) -> dict[str, object]:
        """The setting in a shared link's query (no tau: fixed k)."""
        fields = self.entry()
        return {name: value for name, value in fields.items() if value is not None}

    @classmethod
    def from_query(cls, query: dict[str, str]) -> Setting:
        """A link's query, strings as a browser sends them (ValueError or KeyError when unusable)."""
        return cls.from_controls(query["k"], query["a"], query["layer"], query.get("layout", "channel"),
                                 bool(query.get("tau")), query.get("tau"), query.get("placement", "inline"))

    def row(self) -> dict[str, object]:
        """The setting's columns in the search's rows (layers joined by '+', a to 4 decimals)."""
        return dict(layout=self.layout, layer="+".join(self.layers), k=self.k, a=round(self.a, 4), tau=self.tau,
                    placement=self.placement, directions=self.directions)

    @classmethod
    def from_row(cls, r) -> Setting:
        """The setting of a row, a summary line or a cost-grid line (an attribute each; the tau of a
        fixed k is empty in rows and '-' in summaries; a cost grid's settings are in-line)."""
        unset = r.tau is None or r.tau == "-" or (isinstance(r.tau, float) and math.isnan(r.tau))
        tau = None if unset else float(r.tau)
        return cls(layers=tuple(r.layer.split("+")), layout=r.layout, k=int(r.k), a=float(r.a), tau=tau,
                   placement=getattr(r, "placement", "inline"))

    def controls(self) -> dict[str, object]:
        """The Lab's control values, by their names (tau keeps a usable value while k is fixed)."""
        return dict(k=self.k, a=self.a, layer=self.layers[0], layout=self.layout, adaptive=self.tau is not None,
                    tau=self.tau or 0.9, placement=self.placement)

    @classmethod
    def from_controls(cls, k, a, layer, layout, adaptive, tau, placement) -> Setting:
        """What the Lab's controls hold (numbers may arrive as strings; ValueError when unusable)."""
        try:
            return cls(k=int(k), a=float(a), layers=(layer,), layout=layout, tau=float(tau) if adaptive else None,
                       placement=placement)
        except TypeError as e:
            raise ValueError(str(e)) from None
