"""The G-study family's generative simulator: crossed and nested random effects plus noise.

One generator, :func:`draw_scores`, draws the scores of one study on a design (each
observation's level of each component) from given standard deviations: a new Normal(0, σ)
effect for every level of every component, then a Gaussian residual, or for the ordinal
likelihood a standard logistic error cut at the cut points. It serves

- :func:`simulate_gstudy`, the NCTE-shaped example with known truth (the embedded default
  G-study, ``python -m src.simulate --family gstudy``, the G-study tests): teachers are
  observed on a few lessons of four segments; each lesson is scored by one rater drawn from
  a pool that crosses teachers (as in NCTE). Scores are kept continuous (not rounded to the
  1–7 scale) so that the Gaussian G-study is the true model;
- :func:`posterior_replicates`, the report's replicated studies: the fitted table's own
  design at posterior draws of the σ's (and μ or the cut points).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar, Protocol

import numpy as np
import pandas as pd
import xarray as xr

from llm_measure.errors import InputError
from llm_measure.families.gstudy.gtheory import g_coefficients
from llm_measure.families.spec import ModelSpec

# Per component: (each observation's level code, the number of levels). A level without
# observations still gets its effect drawn, so a design's random stream does not depend on
# which levels happen to be observed.
Levels = dict[str, tuple[np.ndarray, int]]

# True standard deviations: item 1 is near the lme4 estimates for NCTE's CLPC; item 2 has a
# larger teacher share, as instructional dimensions tend to.
TRUE_SD = {
    "SIM_CLIMATE": {"teacher": 0.42, "lesson": 0.75, "rater": 0.60, "residual": 0.55},
    "SIM_DIALOGUE": {"teacher": 0.70, "lesson": 0.50, "rater": 0.35, "residual": 0.60},
}
TRUE_MEAN = {"SIM_CLIMATE": 4.5, "SIM_DIALOGUE": 3.2}
FACETS = {
    "teacher": frozenset({"teacher"}),
    "lesson": frozenset({"teacher", "lesson"}),
    "rater": frozenset({"rater"}),
    "residual": frozenset({"teacher", "lesson", "segment"}),
}
DSTUDY = {"lesson": 4, "segment": 4, "rater": 4}
MAX_ROWS = 20_000_000  # ratings; beyond this the tables no longer fit in a laptop's memory


def draw_scores(
    levels: Levels,
    sd: dict[str, float],
    rng: np.random.Generator,
    *,
    mean: float = 0.0,
    residual_sd: float | None = None,
    cutpoints: np.ndarray | None = None,
    lo: float = 0,
) -> np.ndarray:
    """One study's scores on the design ``levels`` (components in their order).

    Gaussian (no ``cutpoints``): mean + Σ effects + Normal(0, residual_sd).
    Ordinal: Σ effects + a standard logistic error, cut at ``cutpoints``; the scores are
    ``lo`` + the category (0, 1, ...)."""
    n = len(next(iter(levels.values()))[0])
    y = np.full(n, float(mean))
    for name, (codes, n_levels) in levels.items():
        y += rng.normal(0.0, sd[name], size=n_levels)[codes]
    if cutpoints is not None:
        y += rng.logistic(size=n)  # the standard logistic: SD π/√3
        return lo + (y[:, None] > np.asarray(cutpoints)[None, :]).sum(axis=1)
    assert residual_sd is not None, "a Gaussian draw needs residual_sd"
    return y + rng.normal(0.0, residual_sd, size=n)


def simulate_gstudy(
    n_teachers: int = 60,
    lessons_per_teacher: int = 3,
    segments_per_lesson: int = 4,
    n_raters: int = 12,
    true_sd: dict[str, dict[str, float]] | None = None,
    true_mean: dict[str, float] | None = None,
    seed: int = 7,
) -> pd.DataFrame:
    """The long table of an NCTE-shaped G-study (human ratings only): every item's scores
    from :func:`draw_scores` with the true SDs and means, items in ``true_sd``'s order."""
    true_sd = true_sd or TRUE_SD
    true_mean = true_mean or TRUE_MEAN
    rng = np.random.default_rng(seed)
    n_l, n_s = lessons_per_teacher, segments_per_lesson
    lesson_rater = rng.integers(n_raters, size=(n_teachers, n_l))
    t, j, s = (
        a.ravel()
        for a in np.meshgrid(np.arange(n_teachers), np.arange(n_l), np.arange(n_s), indexing="ij")
    )
    r = lesson_rater[t, j]
    levels = {
        "teacher": (t, n_teachers),
        "lesson": (t * n_l + j, n_teachers * n_l),
        "rater": (r, n_raters),
    }
    teacher = np.char.add("T", np.char.zfill(t.astype(str), 3))
    ids = pd.DataFrame(
        {
            "teacher": teacher,
            "lesson": np.char.add(np.char.add(teacher, "-L"), j.astype(str)),
            "segment": (s + 1).astype(str),
        }
    )
    rater = np.char.add("R", np.char.zfill(r.astype(str), 2))
    frames = []
    for item, sd in true_sd.items():
        y = draw_scores(levels, sd, rng, mean=true_mean[item], residual_sd=sd["residual"])
        frames.append(ids.assign(item=item, rater=rater, score=y))
    return pd.concat(frames, ignore_index=True)


def truth_table(true_sd: dict | None = None) -> dict[str, dict[str, float]]:
    """Every summary quantity's true value, computed from the true SDs."""
    out = {}
    for item, sd in (true_sd or TRUE_SD).items():
        var = {k: v**2 for k, v in sd.items()}
        total = sum(var.values())
        row = {}
        for k in sd:
            row[f"sd[{k}]"] = sd[k]
            row[f"var[{k}]"] = var[k]
            row[f"share[{k}]"] = var[k] / total
        row["Erho2"], row["Phi"] = g_coefficients(var, FACETS, "teacher", DSTUDY)
        out[item] = row
    return out


def level_codes(table: pd.DataFrame, components: dict[str, list[str]]) -> Levels:
    """The design of a fitted table: each component's level (the combination of its
    columns) per row, levels numbered in order of appearance."""
    levels = {}
    for name, cols in components.items():
        idx = pd.MultiIndex.from_frame(table[cols].astype(str)).factorize()[0]
        levels[name] = (idx, int(idx.max()) + 1)
    return levels


class PopulationModel(Protocol):
    """What the replicates need of the G-study family (families/gstudy/family.py ``GStudy``,
    which imports this module: a protocol keeps the imports one way)."""

    def ordinal_scale(self, spec: ModelSpec, sub: pd.DataFrame) -> tuple[int, int] | None: ...

    def population_mean(
        self,
        spec: ModelSpec,
        table: pd.DataFrame,
        mu: float,
        sigma: dict[str, float],
        rng: np.random.Generator,
    ) -> float: ...


def posterior_replicates(
    posterior: xr.Dataset,
    spec: ModelSpec,
    table: pd.DataFrame,
    n: int,
    rng: np.random.Generator,
    family: PopulationModel,
) -> np.ndarray:
    """(n, observations) scores replicated from a fitted G-study at n random posterior draws:
    new effects for every level of every component and a new residual, on the table's own
    design; for the ordinal likelihood the latent score is cut at the draw's cut points.
    ``family`` is the G-study family (its population mean and ordinal scale; passed in so
    that this module does not import the family's, which imports it)."""
    ordinal = spec.likelihood == "ordinal"
    flat = posterior.stack(sample=("chain", "draw"))
    picks = rng.choice(flat.sizes["sample"], size=n, replace=False)
    comps = spec.raw["components"]
    levels = level_codes(table, comps)
    out = np.empty((n, len(table)))
    for k, s in enumerate(picks):
        draw = flat.isel(sample=int(s))
        sd = {name: float(draw["sigma"].sel(component=name)) for name in comps}
        if ordinal:
            scale = family.ordinal_scale(spec, table)
            assert scale is not None  # an ordinal table's scale is checked when it is read
            lo = scale[0]
            cuts = draw["cutpoints"].to_numpy()
            out[k] = draw_scores(levels, sd, rng, cutpoints=cuts, lo=lo)
        else:  # new levels: the population mean, not the observed levels' (zero-sum fits)
            mean = family.population_mean(spec, table, float(draw["mu"]), sd, rng)
            residual = float(draw["sigma"].sel(component="residual"))
            out[k] = draw_scores(levels, sd, rng, mean=mean, residual_sd=residual)
    return out


# ---- the simulator behind the family contract (python -m src.simulate --family gstudy) ----
@dataclass
class GStudyConfig:
    family: ClassVar[str] = "gstudy"  # the family whose simulator reads this config
    teachers: int = 60
    lessons: int = 3  # per teacher
    segments: int = 4  # per lesson
    raters: int = 12  # the pool; each lesson is scored by one of them
    seed: int = 7


class GStudySimulator:
    """The family's simulator behind the contract (families/base.py ``Simulator``): the
    two items of :data:`TRUE_SD` on a configurable NCTE-shaped design."""

    config = GStudyConfig

    def __init__(self, family: PopulationModel) -> None:
        self.family = family  # the GStudy family this simulator belongs to

    description = (
        "Simulate an NCTE-shaped G-study (human ratings of two items, each lesson scored by "
        "one rater from a pool): writes the long ratings table and truth.json (the true "
        "SDs, means and every summary quantity) into --out."
    )

    def simulate(self, config: GStudyConfig) -> tuple[pd.DataFrame, None, dict]:
        for name, value in asdict(config).items():
            if name != "seed" and value < 1:
                raise InputError(f"--{name} must be at least 1", column=f"--{name}")
        if not 0 <= config.seed < 2**32:  # what numpy's generator accepts
            raise InputError(
                f"--seed must lie between 0 and 2**32 - 1, not {config.seed}", column="--seed"
            )
        rows = config.teachers * config.lessons * config.segments * len(TRUE_SD)
        if rows > MAX_ROWS:
            raise InputError(
                f"these sizes make {rows:,} ratings, more than the {MAX_ROWS:,} a "
                "simulation writes; choose smaller sizes",
                column="--teachers",
            )
        ratings = simulate_gstudy(
            config.teachers, config.lessons, config.segments, config.raters, seed=config.seed
        )
        truth = {
            "config": asdict(config),
            "parameters": {"sd": TRUE_SD, "mean": TRUE_MEAN},
            "derived": truth_table(),
        }
        return ratings, None, truth

    def replicates(
        self,
        posterior: xr.Dataset,
        spec: ModelSpec,
        table: pd.DataFrame,
        n: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """The report's replicated studies: :func:`posterior_replicates`."""
        return posterior_replicates(posterior, spec, table, n, rng, self.family)

    def headline(self, truth: dict) -> str:
        shares = ", ".join(
            f"{item} {row['share[teacher]']:.3f}" for item, row in truth["derived"].items()
        )
        return f"true teacher shares {shares}"
