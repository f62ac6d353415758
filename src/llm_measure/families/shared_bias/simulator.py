"""The shared-bias family's generative simulator: NCTE-shaped data with known truth.

:func:`simulate` returns, for one :class:`SimConfig`:

- the long ratings table — human ratings (one rater per lesson, drawn from a pool that
  crosses teachers, as in NCTE) and K models × P prompts × R replicates rating every segment
  on every item;
- the outcome table: one teacher-level outcome (value-added) per teacher;
- the truth: the configuration, every true parameter, and every quantity that
  ``python -m src.fit`` reports in ``summary.csv`` at its true value (``derived[item][quantity]``),
  and this draw's own values of the headline quantities (``realised``: sample variances of the
  model-error effects drawn, their shared share, and κ from a least-squares fit of the outcome
  on the teachers' true means), which differ from the population values by sampling error.

The Gaussian data are continuous (the Gaussian model is then the true model); the ordinal
data are whole scores on ``scale_min..scale_max`` from a cumulative logit. ``python -m
src.simulate`` writes the three into a folder; SBC, the recovery tests and the embedded
default study draw from here too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from llm_measure.errors import InputError
from llm_measure.families.shared_bias.derived import Params, TeacherDesign, derived_quantities

MAX_ROWS = 20_000_000  # ratings; beyond this the tables no longer fit in a laptop's memory


@dataclass
class SimConfig:
    family: ClassVar[str] = "shared_bias"  # the family whose simulator reads this config
    teachers: int = 60
    lessons: int = 2  # per teacher
    segments: int = 2  # per lesson
    items: int = 2
    human_raters: int = 8  # the pool
    humans_per_lesson: int = 1  # raters scoring each lesson (all its segments)
    models: int = 4
    prompts: int = 2
    replicates: int = 1  # ratings per model × prompt × segment × item
    shared_share: float = 0.5  # σβ² / (σβ² + σδ² + σγ² + σε²)
    model_error_var: float = 0.6  # σβ² + σδ² + σγ² + σε², per item
    kappa_theta: float = 0.5
    kappa_beta: float = -1.5
    outcome_sd: float = 0.4  # σv, the outcome's residual SD
    likelihood: str = "gaussian"
    scale_min: int = 1  # ordinal only
    scale_max: int = 7
    gamma: bool = True  # model × prompt × segment term (needs prompts, replicates > 1)
    # level-specific loadings: each LLM's loading on teacher- and lesson-level quality is
    # this multiple of its loading on segment-level quality (None: the same at every level,
    # as the fitted model assumes)
    loading_between: float | None = None
    seed: int = 1
    # Declared structures (docs/ratings_table.md). "classroom": teacher ⊃ lesson ⊃ segment as
    # above; "none": `teachers` units with no grouping (lessons = segments = 1); "one": units
    # (`lessons` per group, segments = 1) within `teachers` groups. The table then has the
    # columns unit (and group) instead of teacher, lesson and segment.
    grouping: str = "classroom"
    crossed_levels: int = 0  # "one" only: a grouping crossed with the groups (a
    #                                  group's unit j is at level j mod crossed_levels), with a
    #                                  quality effect per level × item; column "crossed"
    humans: str = "persons"  # "exchangeable": humans_per_lesson slots per unit, filled
    #                                  by different people (no person severity)
    model_samples: int = 1  # each model score is the mean of this many answers

    def gamma_on(self) -> bool:
        return self.gamma and self.prompts > 1 and self.replicates > 1

    def declared(self) -> str:
        """The spec sections ([units], [raters], [scores]) that declare this simulation's
        structure to src.fit; empty for the classroom table of persons and single answers."""
        lines = []
        if self.grouping != "classroom":
            lines += [
                "[units]",
                'unit = "unit"',
                "nested_in = []" if self.grouping == "none" else 'nested_in = ["group"]',
            ]
            lines += ['crossed = ["crossed"]'] if self.crossed_levels else []
        if self.humans == "exchangeable":
            lines += ["[raters]", 'humans = "exchangeable"']
        if self.model_samples > 1:
            lines += ["[scores]", f"model_samples = {self.model_samples}"]
        return "\n".join(lines) + ("\n" if lines else "")


# Quality and human-error SDs per item: on the rating scale (Gaussian) or the logit scale
# (ordinal, where the human noise is the logistic's own, variance π²/3).
QUALITY_SD = {
    "gaussian": {
        "teacher": 0.45,
        "lesson": 0.35,
        "segment": 0.45,
        "rater_severity": 0.30,
        "human_noise": 0.50,
    },
    "ordinal": {"teacher": 0.80, "lesson": 0.60, "segment": 0.70, "rater_severity": 0.40},
}
CROSSED_SD = {"gaussian": 0.35, "ordinal": 0.50}  # the crossed grouping's quality effect
# How the non-shared model error splits (fractions of 1 − shared share)
SPLIT = {
    True: {"model_specific": 0.5, "model_prompt_segment": 0.2, "model_noise": 0.3},
    False: {"model_specific": 0.5, "model_noise": 0.5},
}


def components(cfg: SimConfig) -> list[str]:
    """The variance components a fit of these data reports (the same rules as the fit)."""
    comps = ["teacher"]
    comps += ["lesson"] if cfg.lessons > 1 else []
    comps += ["segment"] if cfg.segments > 1 else []
    comps += ["crossed"] if cfg.crossed_levels else []
    comps += ["rater_severity"] if cfg.human_raters > 1 and cfg.humans == "persons" else []
    comps += ["human_noise"] if cfg.likelihood == "gaussian" else []
    comps += ["shared", *SPLIT[cfg.gamma_on()]]
    return comps


def true_sds(cfg: SimConfig, item: int) -> dict[str, float]:
    """True SDs of item ``item`` (items differ a little so that per-item estimates differ)."""
    bump = 1.0 + 0.1 * item
    sds = {k: v * bump for k, v in QUALITY_SD[cfg.likelihood].items()}
    sds["crossed"] = CROSSED_SD[cfg.likelihood] * bump
    err = cfg.model_error_var * bump**2
    sds["shared"] = math.sqrt(cfg.shared_share * err)
    for name, frac in SPLIT[cfg.gamma_on()].items():
        sds[name] = math.sqrt((1.0 - cfg.shared_share) * frac * err)
    return {k: sds[k] for k in components(cfg)}


def check_config(cfg: SimConfig) -> None:
    for name in (
        "teachers",
        "lessons",
        "segments",
        "items",
        "human_raters",
        "humans_per_lesson",
        "models",
        "prompts",
        "replicates",
    ):
        if getattr(cfg, name) < 1:
            raise InputError(
                f"--{name.replace('_', '-')} must be at least 1",
                column=f"--{name.replace('_', '-')}",
            )
    rows = (
        cfg.teachers
        * cfg.lessons
        * cfg.segments
        * cfg.items
        * (cfg.humans_per_lesson + cfg.models * cfg.prompts * cfg.replicates)
    )
    if rows > MAX_ROWS:
        raise InputError(
            f"these sizes make {rows:,} ratings, more than the {MAX_ROWS:,} a "
            "simulation writes; choose smaller sizes",
            column="--teachers",
        )
    if cfg.grouping not in ("classroom", "none", "one"):
        raise InputError("--grouping must be classroom, none or one", column="--grouping")
    if cfg.grouping != "classroom" and (
        cfg.segments > 1 or (cfg.grouping == "none" and cfg.lessons > 1)
    ):
        raise InputError(
            f"--grouping {cfg.grouping} has units "
            + ("only: --lessons and " if cfg.grouping == "none" else "within groups: ")
            + "--segments must be 1",
            column="--segments",
        )
    if cfg.crossed_levels and (
        cfg.grouping != "one" or cfg.crossed_levels < 2 or cfg.lessons < cfg.crossed_levels
    ):
        raise InputError(
            "--crossed-levels needs --grouping one, at least 2 levels and at "
            "least as many units per group (--lessons)",
            column="--crossed-levels",
        )
    if cfg.humans not in ("persons", "exchangeable"):
        raise InputError("--humans must be persons or exchangeable", column="--humans")
    if cfg.model_samples < 1:
        raise InputError("--model-samples must be at least 1", column="--model-samples")
    if cfg.humans == "persons" and cfg.humans_per_lesson > cfg.human_raters:
        raise InputError(
            "--humans-per-lesson cannot exceed --human-raters", column="--humans-per-lesson"
        )
    if not 0.0 <= cfg.shared_share <= 1.0:
        raise InputError("--shared-share must lie in [0, 1]", column="--shared-share")
    if cfg.model_error_var <= 0 or cfg.outcome_sd <= 0:
        raise InputError("variances must be positive", column="--model-error-var")
    if cfg.likelihood not in ("gaussian", "ordinal"):
        raise InputError("--likelihood must be gaussian or ordinal", column="--likelihood")
    for name, value in asdict(cfg).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(
                f"--{name.replace('_', '-')} must be a finite number, not {value}",
                column=f"--{name.replace('_', '-')}",
            )
    if not 0 <= cfg.seed < 2**32:  # what numpy's generator accepts
        raise InputError(
            f"--seed must lie between 0 and 2**32 - 1, not {cfg.seed}", column="--seed"
        )
    if cfg.scale_max - cfg.scale_min < 1:
        raise InputError("--scale-max must exceed --scale-min", column="--scale-max")


def simulate(cfg: SimConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(ratings table, outcome table, truth) for one configuration."""
    check_config(cfg)
    rng = np.random.default_rng(cfg.seed)
    ordinal = cfg.likelihood == "ordinal"
    n_t, n_l, n_s, n_i = cfg.teachers, cfg.lessons, cfg.segments, cfg.items
    n_m, n_p, n_r = cfg.models, cfg.prompts, cfg.replicates
    items = [f"ITEM{i + 1}" for i in range(n_i)]
    sds = [true_sds(cfg, i) for i in range(n_i)]

    def sd(name: str) -> np.ndarray:  # (item,) array of a component's SD, 0 when absent
        return np.array([s.get(name, 0.0) for s in sds])

    mu = np.zeros(n_i) if ordinal else 4.0 + 0.3 * np.arange(n_i)
    # quality: (teacher, lesson, segment, item)
    teacher = rng.normal(size=(n_t, 1, 1, n_i)) * sd("teacher")
    lesson = rng.normal(size=(n_t, n_l, 1, n_i)) * sd("lesson")
    segment = rng.normal(size=(n_t, n_l, n_s, n_i)) * sd("segment")
    dev = teacher + lesson + segment  # θ − μ
    if cfg.crossed_levels:  # the crossed level of a group's lesson (unit) l is l mod levels
        crossed = rng.normal(size=(cfg.crossed_levels, n_i)) * sd("crossed")
        dev = dev + crossed[np.arange(n_l) % cfg.crossed_levels][None, :, None, :]
    beta = rng.normal(size=(n_t, n_l, n_s, n_i)) * sd("shared")
    severity = rng.normal(size=(cfg.human_raters, n_i)) * sd("rater_severity")
    severity -= severity.mean(axis=0)  # the fit's identification
    loading = np.exp(rng.normal(0.0, 0.15, size=(n_m, n_i)))
    alpha = (
        mu
        + rng.normal(0.0, 0.30, size=(n_m, 1, 1))
        + rng.normal(0.0, 0.15, (1, n_p, 1))
        + rng.normal(0.0, 0.05, size=(n_m, n_p, n_i))
    )  # (model, prompt, item)
    cut = (
        np.linspace(-2.5, 2.5, cfg.scale_max - cfg.scale_min)
        * (1.0 + 0.1 * np.arange(n_i))[:, None]
    )

    # humans: each lesson is scored by humans_per_lesson distinct raters from the pool
    raters = np.argsort(rng.random((n_t, n_l, cfg.human_raters)), axis=2)[
        :, :, : cfg.humans_per_lesson
    ]
    t, l_, s, i, k = np.meshgrid(
        np.arange(n_t),
        np.arange(n_l),
        np.arange(n_s),
        np.arange(n_i),
        np.arange(cfg.humans_per_lesson),
        indexing="ij",
    )
    t, l_, s, i, k = (a.ravel() for a in (t, l_, s, i, k))
    h = raters[t, l_, k]
    if cfg.humans == "exchangeable":  # slot k of every unit, a different person each time
        severity = np.zeros((cfg.humans_per_lesson, n_i))
        h = k
    latent_h = mu[i] + dev[t, l_, s, i] + severity[h, i]
    if ordinal:
        y_h = _categorise(latent_h + rng.logistic(size=latent_h.shape), cut[i], cfg)
    else:
        y_h = latent_h + rng.normal(size=latent_h.shape) * sd("human_noise")[i]
    names = (
        [f"human{x + 1}" for x in h] if cfg.humans == "exchangeable" else [f"H{x:02d}" for x in h]
    )
    humans = _frame(t, l_, s, i, items, names, "human", "none", 0, y_h)

    # models: every segment × item × model × prompt × replicate
    t, l_, s, i, m, p, r = (
        a.ravel()
        for a in np.meshgrid(
            np.arange(n_t),
            np.arange(n_l),
            np.arange(n_s),
            np.arange(n_i),
            np.arange(n_m),
            np.arange(n_p),
            np.arange(n_r),
            indexing="ij",
        )
    )
    delta = rng.normal(size=(n_t, n_l, n_s, n_i, n_m)) * sd("model_specific")[:, None]
    gamma = (
        rng.normal(size=(n_t, n_l, n_s, n_i, n_m, n_p)) * sd("model_prompt_segment")[:, None, None]
    )
    above = (teacher + lesson)[t, l_, 0, i]  # quality above the segment
    between = loading if cfg.loading_between is None else loading * cfg.loading_between
    latent_m = (
        alpha[m, p, i]
        + loading[m, i] * segment[t, l_, s, i]
        + between[m, i] * above
        + beta[t, l_, s, i]
        + delta[t, l_, s, i, m]
        + gamma[t, l_, s, i, m, p]
    )
    noise_sd = sd("model_noise")[i]
    k_ans = cfg.model_samples  # each score: the mean of k_ans answers
    if ordinal:
        scale = noise_sd * math.sqrt(3.0) / math.pi
        answers = [latent_m + rng.logistic(size=latent_m.shape) * scale for _ in range(k_ans)]
        y_m = np.mean([_categorise(a, cut[i], cfg) for a in answers], axis=0)
        noise = answers[0] - latent_m
    else:
        noise = rng.normal(size=latent_m.shape) * noise_sd  # of one answer
        y_m = latent_m + (
            noise
            if k_ans == 1
            else rng.normal(size=(k_ans, *latent_m.shape)).mean(axis=0) * noise_sd
        )
    model_names = [f"M{x + 1}" for x in m]
    prompt_names = [f"P{x + 1}" for x in p]
    models = _frame(t, l_, s, i, items, model_names, "model", prompt_names, r, y_m)
    ratings = pd.concat([humans, models], ignore_index=True)
    if cfg.grouping != "classroom":
        ratings = _declared_columns(ratings, cfg)
    if ordinal:
        ratings["scale_min"], ratings["scale_max"] = cfg.scale_min, cfg.scale_max

    # outcome: mean quality (θ − μ) and mean shared bias of each teacher over its cells
    theta_bar = dev.mean(axis=(1, 2, 3))
    beta_bar = beta.mean(axis=(1, 2, 3))
    kappa0 = 0.0
    vam = (
        kappa0
        + cfg.kappa_theta * theta_bar
        + cfg.kappa_beta * beta_bar
        + rng.normal(size=n_t) * cfg.outcome_sd
    )
    outcome = pd.DataFrame({"teacher": [f"T{x:03d}" for x in range(n_t)], "outcome": vam})

    truth = _truth(cfg, items, sds, loading, alpha, theta_bar, beta_bar)
    truth["realised"] = _realised(
        items,
        {
            "shared": beta,
            "model_specific": np.moveaxis(delta, 3, -1),
            "model_prompt_segment": np.moveaxis(gamma, 3, -1),
            "model_noise": np.stack([noise[i == k] for k in range(n_i)], axis=-1),
        },
        theta_bar,
        beta_bar,
        vam,
    )
    # per-unit truth: each teacher's mean over its cells of θ − μ and of β, per item (what
    # a fit's unit_scores teacher_quality and teacher_shared_bias estimate)
    teacher_ids = outcome["teacher"].tolist()
    truth["units"] = {
        name: {t_id: dict(zip(items, values.tolist())) for t_id, values in zip(teacher_ids, means)}
        for name, means in (
            ("teacher_quality", dev.mean(axis=(1, 2))),
            ("teacher_shared_bias", beta.mean(axis=(1, 2))),
        )
    }
    truth["parameters"].update(
        {
            "mu": dict(zip(items, mu.tolist())),
            "cutpoints": dict(zip(items, cut.tolist())) if ordinal else None,
            "kappa0": kappa0,
        }
    )
    return ratings, outcome, truth


def _declared_columns(ratings: pd.DataFrame, cfg: SimConfig) -> pd.DataFrame:
    """The table of a declared structure: unit (and group, crossed) for teacher/lesson/segment."""
    unit = ratings["teacher"] if cfg.grouping == "none" else ratings["lesson"]
    ids = {"unit": unit}
    if cfg.grouping == "one":
        ids["group"] = ratings["teacher"]
    if cfg.crossed_levels:
        lesson_no = ratings["lesson"].str.rsplit("-L", n=1).str[1].astype(int) - 1
        ids["crossed"] = "C" + (lesson_no % cfg.crossed_levels).astype(str)
    rest = ratings.drop(columns=["teacher", "lesson", "segment"])
    return pd.concat([pd.DataFrame(ids), rest], axis=1)


def _categorise(latent: np.ndarray, cuts: np.ndarray, cfg: SimConfig) -> np.ndarray:
    return cfg.scale_min + (latent[:, None] > cuts).sum(axis=1).astype(float)


def _frame(
    t: np.ndarray,
    l_: np.ndarray,
    s: np.ndarray,
    i: np.ndarray,
    items: list[str],
    rater: list[str],  # one name per row
    kind: str,
    prompt: str | list[str],
    replicate: int | np.ndarray,
    score: np.ndarray,
) -> pd.DataFrame:
    teacher = np.char.add("T", np.char.zfill(t.astype(str), 3))
    return pd.DataFrame(
        {
            "teacher": teacher,
            "lesson": np.char.add(np.char.add(teacher, "-L"), (l_ + 1).astype(str)),
            "segment": (s + 1).astype(str),
            "item": np.asarray(items)[i],
            "rater": rater,
            "rater_kind": kind,
            "prompt": prompt,
            "replicate": replicate,
            "score": score,
        }
    )


def _realised(
    items: list[str], errors: dict, theta_bar: np.ndarray, beta_bar: np.ndarray, vam: np.ndarray
) -> dict:
    """This draw's own values of the headline quantities. A population variance and the
    variance of the effects one simulation actually drew differ by sampling error (about
    √(2/n) relatively for n draws); a recovery check can hold a posterior to either.
    ``errors`` maps each model-error component to its draws with the item last."""
    var = {c: np.array([np.var(e[..., k]) for k in range(len(items))]) for c, e in errors.items()}
    total = sum(var.values(), start=np.zeros(len(items)))
    out = {
        item: {
            "share[shared]": float(var["shared"][k] / total[k]),
            **{f"var[{c}]": float(v[k]) for c, v in var.items()},
        }
        for k, item in enumerate(items)
    }
    out["pooled"] = {"share[shared]": float(var["shared"].sum() / total.sum())}
    # κ from the least-squares fit of the outcome on the teachers' true means
    design = np.column_stack([np.ones_like(theta_bar), theta_bar, beta_bar])
    coef = np.linalg.lstsq(design, vam, rcond=None)[0]
    out["pooled"].update({"kappa_theta": float(coef[1]), "kappa_beta": float(coef[2])})
    return out


def _truth(
    cfg: SimConfig,
    items: list[str],
    sds: list[dict[str, float]],
    loading: np.ndarray,
    alpha: np.ndarray,
    theta_bar: np.ndarray,
    beta_bar: np.ndarray,
) -> dict:
    n_m, n_p = cfg.models, cfg.prompts
    var: dict[str, xr.DataArray | float] = {
        c: xr.DataArray([s[c] ** 2 for s in sds], dims="item", coords={"item": items})
        for c in components(cfg)
    }
    if cfg.likelihood == "ordinal":
        var["human_noise"] = math.pi**2 / 3
    mp = [(m, p) for m in range(n_m) for p in range(n_p)]
    params = Params(
        var=var,
        loading=xr.DataArray(loading, dims=("model", "item"), coords={"item": items}),
        alpha=xr.DataArray(
            np.array([alpha[m, p] for m, p in mp]),
            dims=("model_prompt", "item"),
            coords={"item": items},
        ),
        mp_model=[f"M{m + 1}" for m, _ in mp],
        mp_prompt=[f"P{p + 1}" for _, p in mp],
        kappa_theta=xr.DataArray(cfg.kappa_theta),
        kappa_beta=xr.DataArray(cfg.kappa_beta),
        sigma_outcome=xr.DataArray(cfg.outcome_sd),
    )
    design = TeacherDesign(
        lessons=cfg.lessons, segments=cfg.segments, items=cfg.items, models=n_m, prompts=n_p
    )
    derived: dict[str, dict[str, float]] = {}
    for (item, quantity), value in derived_quantities(params, design).items():
        derived.setdefault(item, {})[quantity] = float(value)
    return {
        "config": asdict(cfg),
        # what to add to a shared-bias spec to fit these data (empty: the classroom table)
        "spec_sections": cfg.declared(),
        "parameters": {
            "sd": {item: s for item, s in zip(items, sds)},
            "loading": {f"M{m + 1}": dict(zip(items, loading[m].tolist())) for m in range(n_m)},
            "alpha": {f"M{m + 1}|P{p + 1}": dict(zip(items, alpha[m, p].tolist())) for m, p in mp},
            "kappa_theta": cfg.kappa_theta,
            "kappa_beta": cfg.kappa_beta,
            "sigma_outcome": cfg.outcome_sd,
            "sample_sd_teacher_mean_quality": float(np.std(theta_bar)),
            "sample_sd_teacher_mean_shared_bias": float(np.std(beta_bar)),
        },
        "derived": derived,
    }


class SharedBiasSimulator:
    """The family's simulator behind the contract (families/base.py ``Simulator``)."""

    config = SimConfig
    description = (
        "Simulate NCTE-shaped ratings from the shared-bias model: writes the long "
        "ratings table, outcome.csv and truth.json (every true parameter and "
        "derived quantity) into --out."
    )

    def simulate(self, config: SimConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
        return simulate(config)

    def headline(self, truth: dict) -> str:
        pooled = truth["derived"]["pooled"]
        return (
            f"true pooled shared share {pooled['share[shared]']:.3f}, "
            f"κβ {truth['parameters']['kappa_beta']:.3f}"
        )


# The embedded shared-bias study: 60 teachers × 2 lessons × 2 segments, 2 items; each lesson
# scored by 2 of 8 humans (so human noise and segment quality are told apart directly), 4
# models × 2 prompts × 2 replicates (so the model × prompt × segment term is identified),
# half of the model error shared, and a shared bias that lowers the outcome (κβ = −1.5).
# The simulator's own defaults otherwise, seed 1: not chosen for how the fit turns out.
EMBEDDED_STUDY: dict[str, Any] = {
    "teachers": 60,
    "lessons": 2,
    "segments": 2,
    "items": 2,
    "human_raters": 8,
    "humans_per_lesson": 2,
    "models": 4,
    "prompts": 2,
    "replicates": 2,
    "shared_share": 0.5,
    "kappa_theta": 0.5,
    "kappa_beta": -1.5,
    "seed": 1,
}
