"""The per-unit draws follow the exact conditional distribution given the data and one
hyperparameter point.

For one fixed point φ, the unit effects and the data are jointly Gaussian, so their
conditional mean and covariance can be computed the slow way: one dense covariance matrix of
every latent effect, every rating and every outcome, conditioned with a linear solve. The
fast top-down sampler, run N times at φ, must reproduce that mean and variance up to Monte
Carlo error; with a wrong variance or without the outcome's update it must not.
"""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from tiny_designs import tiny_shared_bias_study, with_crossed_column

from llm_measure.families.common.unit_scores import (
    gstudy_unit_scores,
    nested_conditional_draws,
    shared_bias_unit_scores,
)
from llm_measure.families.shared_bias.design import prepare

N = 8_000  # draws at the one point
# A Monte Carlo mean of N independent draws has SD sd/√N; a variance estimate has relative
# SD √(2/N) (Gaussian draws). 4.5 of either: a false alarm about once in 150,000
# comparisons; these tests make about 300. The planted errors give z of 20 to 200.
Z = 4.5


def mismatches(draws: np.ndarray, mean: np.ndarray, var: np.ndarray) -> list[str]:
    """Where (sample, unit) draws disagree with the exact conditional mean and variance."""
    n = len(draws)
    bad = []
    d_mean = np.abs(draws.mean(axis=0) - mean) / np.sqrt(var / n)
    d_var = np.abs(draws.var(axis=0) / var - 1.0) / np.sqrt(2.0 / n)
    for k in np.flatnonzero((d_mean > Z) | (d_var > Z)):
        bad.append(f"unit {k}: mean z = {d_mean[k]:.1f}, variance z = {d_var[k]:.1f}")
    return bad


def condition(loadings, variances, mean_y, y, outputs):
    """E and Var of outputs·latents given y = mean_y + loadings·latents (latents ~ N(0, V))."""
    v = np.diag(variances)
    cov_y = loadings @ v @ loadings.T
    cov_xy = outputs @ v @ loadings.T
    gain = np.linalg.solve(cov_y, cov_xy.T).T
    mean = gain @ (y - mean_y)
    var = np.diag(outputs @ v @ outputs.T - gain @ cov_xy.T)
    return mean, var


def _posterior(point: dict, dims: dict) -> xr.Dataset:
    """N identical draws of one point, as a (chain, draw) posterior."""
    return xr.Dataset(
        {
            k: (("chain", "draw", *dims[k]), np.broadcast_to(v, (1, N, *np.shape(v))).copy())
            for k, v in point.items()
        },
        coords={"chain": [0], "draw": np.arange(N)},
    )


# ---- G-study: teacher ⊃ lesson ⊃ observation -------------------------------------------------
def _gstudy_case():
    rng = np.random.default_rng(5)
    # 4 teachers with 1–3 lessons of 1–4 observations: unbalanced on purpose
    top_of_inner = np.array([0, 1, 1, 2, 2, 2, 3, 3])
    sizes = np.array([3, 1, 4, 2, 2, 1, 4, 3])
    inner = np.repeat(np.arange(8), sizes)
    fixed = rng.normal(size=len(inner))  # the sampled part, known at the point
    y = fixed + rng.normal(size=len(inner))
    return top_of_inner, inner, fixed, y


def _gstudy_exact(top_of_inner, inner, fixed, y, sd):
    n_obs, n_in, n_top = len(inner), len(top_of_inner), top_of_inner.max() + 1
    loadings = np.hstack([np.eye(n_top)[top_of_inner[inner]], np.eye(n_in)[inner], np.eye(n_obs)])
    variances = np.r_[
        np.full(n_top, sd[0] ** 2), np.full(n_in, sd[1] ** 2), np.full(n_obs, sd[2] ** 2)
    ]
    outputs = np.eye(len(variances))[: n_top + n_in]
    return condition(loadings, variances, fixed, y, outputs)


@pytest.mark.parametrize("inflate", [1.0, 1.3])
def test_gstudy_draws_match_dense_conditional(inflate):
    top_of_inner, inner, fixed, y = _gstudy_case()
    sd = (0.7, 0.5, 0.9)  # teacher, lesson, residual
    mean, var = _gstudy_exact(top_of_inner, inner, fixed, y, sd)
    # the sampler through its public entry point, with the fixed part as a function of the
    # draw; ``inflate`` plants a wrong teacher variance (the check must then fail)
    point = {"sigma": np.array([sd[0] * inflate, sd[1], sd[2]])}
    posterior = _posterior(point, {"sigma": ("component",)}).assign_coords(
        component=["teacher", "lesson", "residual"]
    )
    index = {"teacher": top_of_inner[inner], "lesson": inner}
    labels = {"teacher": [f"T{k}" for k in range(4)], "lesson": [f"L{k}" for k in range(8)]}
    scores = gstudy_unit_scores(
        posterior,
        fixed_part=lambda k: fixed,
        y=y,
        integrated=["teacher", "lesson"],
        index=index,
        labels=labels,
        rng=np.random.default_rng(1),
    )
    assert list(scores.coords["teacher"].to_numpy()) == labels["teacher"]
    draws = np.hstack(
        [scores["teacher_effect"].to_numpy()[0], scores["lesson_effect"].to_numpy()[0]]
    )
    bad = mismatches(draws, mean, var)
    if inflate == 1.0:
        assert not bad, bad
    else:
        assert bad, "a 1.3× teacher SD went unnoticed"


def test_gstudy_single_level_matches_dense_conditional():
    top_of_inner, inner, fixed, y = _gstudy_case()
    top = top_of_inner[inner]
    n_top = 4
    mean, var = _gstudy_exact(np.arange(n_top), top, fixed, y, (0.7, 0.0, 0.9))
    resid_sums = np.bincount(top, y - fixed, minlength=n_top)
    draws, _ = nested_conditional_draws(
        np.tile(resid_sums, (N, 1)),
        np.bincount(top).astype(float),
        np.arange(n_top),
        n_top,
        np.full(N, 0.49),
        np.zeros(N),
        np.full(N, 0.81),
        np.random.default_rng(2),
    )
    assert not mismatches(draws, mean[:n_top], var[:n_top])


# ---- shared bias: teacher ⊃ lesson ⊃ cell ⊃ ratings, and the outcome --------------------------
def _random_point(design, rng):
    comps, n_items = design.components, len(design.items)
    return {
        "sigma": np.exp(0.3 * rng.normal(size=(len(comps), n_items))) * 0.6,
        "mu": rng.normal(3.0, 0.3, n_items),
        "alpha": rng.normal(3.0, 0.3, (len(design.model_prompts), n_items)),
        "loading": np.exp(0.3 * rng.normal(size=(len(design.models), n_items))),
        "z_severity": (lambda z: z - z.mean(axis=1, keepdims=True))(
            rng.normal(size=(n_items, len(design.humans)))
        ),
        "kappa": np.array([0.8, -1.2]),
        "kappa0": np.array(0.1),
        "sigma_outcome": np.array(0.3),
    }


DIMS = {
    "sigma": ("component", "item"),
    "mu": ("item",),
    "alpha": ("model_prompt", "item"),
    "loading": ("model", "item"),
    "z_severity": ("item", "human"),
    "kappa": ("kappa_term",),
    "kappa0": (),
    "sigma_outcome": (),
}


def _shared_bias_exact(
    ratings: pd.DataFrame, outcome: pd.DataFrame, design, point, with_outcome: bool
):
    """Conditional mean and variance of the teacher effects, lesson effects, and each
    teacher × item's mean θ − μ and mean β, from the dense joint Gaussian (given the point's
    crossed effects, when the design has a crossed grouping: they shift means)."""
    items, comps = design.items, design.components
    sd = {c: point["sigma"][comps.index(c)] for c in comps}
    crossed = np.zeros((1, len(items)))
    level = np.zeros(len(ratings), dtype=int)
    if "crossed" in comps:
        crossed = sd["crossed"][None, :] * point["z_crossed"]
        level = ratings[design.crossed_name].map(design.crossed_levels.index).to_numpy()
    sd.setdefault("model_prompt_segment", np.zeros(len(items)))
    keys: dict = {}
    entries = []  # (row, latent, coefficient)
    variances: dict = {}

    def latent(key, var):
        variances[key] = var
        return keys.setdefault(key, len(keys))

    rows = ratings.reset_index(drop=True)
    mean = np.zeros(len(rows))
    for r, row in rows.iterrows():
        i = items.index(row["item"])
        t, l_ = row["teacher"], f"{row['teacher']}|{row['lesson']}"
        seg = (t, l_, row["segment"], i)
        quality = [
            latent(("teacher", t, i), sd["teacher"][i] ** 2),
            latent(("lesson", l_, i), sd["lesson"][i] ** 2),
            latent(("segment",) + seg, sd["segment"][i] ** 2),
        ]
        if row["rater_kind"] == "human":
            h = design.humans.index(row["rater"])
            mean[r] = (
                point["mu"][i]
                + sd["rater_severity"][i] * point["z_severity"][i, h]
                + crossed[level[r], i]
            )
            entries += [(r, q, 1.0) for q in quality]
            entries.append((r, latent(("eps_h", r), sd["human_noise"][i] ** 2), 1.0))
        else:
            m = design.models.index(row["rater"])
            mp = design.model_prompts.index(f"{row['rater']}|{row['prompt']}")
            lam = point["loading"][m, i]
            lam_b = point.get("loading_between", point["loading"])[m, i]  # groups' loading
            mean[r] = point["alpha"][mp, i] + lam_b * crossed[level[r], i]
            entries += [(r, q, coef) for q, coef in zip(quality, (lam_b, lam_b, lam))]
            entries.append((r, latent(("beta",) + seg, sd["shared"][i] ** 2), 1.0))
            entries.append((r, latent(("delta", m) + seg, sd["model_specific"][i] ** 2), 1.0))
            entries.append(
                (r, latent(("gamma", mp) + seg, sd["model_prompt_segment"][i] ** 2), 1.0)
            )
            entries.append((r, latent(("eps_m", r), sd["model_noise"][i] ** 2), 1.0))
    cells = rows[["teacher", "lesson", "segment", "item"]].drop_duplicates()
    cells = cells.assign(
        lesson_id=cells["teacher"] + "|" + cells["lesson"],
        c=[crossed[level[k], items.index(it)] for k, it in zip(cells.index, cells["item"])],
    )
    y = rows["score"].to_numpy(float)
    n_rows = len(rows)
    if with_outcome:
        kt, kb = point["kappa"]
        for j, orow in outcome.iterrows():
            mine = cells[cells["teacher"] == orow["teacher"]]
            for c in mine.itertuples():
                i = items.index(c.item)
                seg = (c.teacher, c.lesson_id, c.segment, i)
                for key in (
                    ("teacher", c.teacher, i),
                    ("lesson", c.lesson_id, i),
                    ("segment",) + seg,
                ):
                    entries.append((n_rows + j, keys[key], kt / len(mine)))
                entries.append((n_rows + j, keys[("beta",) + seg], kb / len(mine)))
            entries.append((n_rows + j, latent(("vam", j), point["sigma_outcome"] ** 2), 1.0))
        y = np.r_[y, outcome["outcome"].to_numpy(float)]
        mean = np.r_[
            mean,
            [
                float(point["kappa0"]) + kt * cells.loc[cells["teacher"] == t, "c"].mean()
                for t in outcome["teacher"]
            ],
        ]
    loadings = np.zeros((len(y), len(keys)))
    for r, k, coef in entries:
        loadings[r, k] += coef
    var = np.array([variances[k] for k in keys])
    # outputs in the order of the scores' flattened (unit, item) arrays
    out = []
    for t in design.teachers:
        for i in range(len(items)):
            out.append({keys[("teacher", t, i)]: 1.0})
    for l_ in design.lessons:
        for i in range(len(items)):
            out.append({keys[("lesson", l_, i)]: 1.0})
    for kind in ("quality", "beta"):
        for t in design.teachers:
            for i, item in enumerate(items):
                mine = cells[(cells["teacher"] == t) & (cells["item"] == item)]
                coef = {}
                for c in mine.itertuples():
                    seg = (t, c.lesson_id, c.segment, i)
                    parts = (
                        [("teacher", t, i), ("lesson", c.lesson_id, i), ("segment",) + seg]
                        if kind == "quality"
                        else [("beta",) + seg]
                    )
                    for key in parts:
                        coef[keys[key]] = coef.get(keys[key], 0.0) + 1.0 / len(mine)
                out.append(coef)
    outputs = np.zeros((len(out), len(keys)))
    for k, coef in enumerate(out):
        for col, v in coef.items():
            outputs[k, col] = v
    mean_out, var_out = condition(loadings, var, mean, y, outputs)
    # the teacher × item means of θ − μ include the mean crossed effect of their cells
    shift = np.array(
        [
            cells.loc[(cells["teacher"] == t) & (cells["item"] == item), "c"].mean()
            for t in design.teachers
            for item in items
        ]
    )
    n_te = len(design.teachers) * len(items)
    start = (len(design.teachers) + len(design.lessons)) * len(items)
    mean_out[start : start + n_te] += np.nan_to_num(shift)
    return mean_out, var_out


@pytest.mark.parametrize(
    "keep,plant",
    [
        (0.85, None),
        (1.0, None),
        (0.85, "no_outcome"),
        (0.85, "lesson_sd"),
        (0.85, "crossed"),
        (0.85, "crossed_ignored"),
        (0.85, "per_level"),
        (0.85, "per_level_ignored"),
    ],
)
def test_shared_bias_draws_match_dense_conditional(keep, plant, monkeypatch):
    ratings, outcome, design = tiny_shared_bias_study(keep)
    assert "model_prompt_segment" in design.components  # every component is exercised
    if plant in ("crossed", "crossed_ignored", "per_level", "per_level_ignored"):
        # a grouping crossed with the nesting
        ratings = with_crossed_column(ratings, 3, seed=4)
        design = prepare(ratings, outcome, gamma=True, ordinal=False, crossed="prompt_w")
    point = _random_point(design, np.random.default_rng(4))
    if "crossed" in design.components:
        point["z_crossed"] = np.random.default_rng(5).normal(size=(3, len(design.items)))
    dims = {**DIMS, "z_crossed": ("crossed", "item")}
    if plant in ("per_level", "per_level_ignored"):  # per-level loadings
        point["loading_between"] = np.exp(
            0.5 * np.random.default_rng(6).normal(size=(len(design.models), len(design.items)))
        )
        dims["loading_between"] = ("model", "item")
    mean, var = _shared_bias_exact(ratings, outcome, design, point, with_outcome=True)
    given = dict(point)
    if plant == "per_level_ignored":  # draws that load λ on the group levels too
        given.pop("loading_between")
    if plant == "no_outcome":  # draws that ignore the outcome's information
        from llm_measure.families.common import unit_scores

        monkeypatch.setattr(
            unit_scores, "_condition_on_outcome", lambda d, tree, p, q, *rest: rest[:4]
        )
    if plant == "lesson_sd":  # a 1.3× lesson SD: a wrong variance formula's effect
        given["sigma"] = point["sigma"].copy()
        given["sigma"][design.components.index("lesson")] *= 1.3
    if plant == "crossed_ignored":  # draws that leave the crossed effects out
        given["z_crossed"] = np.zeros_like(point["z_crossed"])
    posterior = _posterior(given, dims).assign_coords(
        component=design.components, item=design.items
    )
    scores = shared_bias_unit_scores(posterior, design, np.random.default_rng(7))
    assert list(scores.coords["teacher"].to_numpy()) == design.teachers
    assert list(scores.coords["lesson"].to_numpy()) == design.lessons
    draws = np.hstack(
        [
            scores[v].to_numpy()[0].reshape(N, -1)
            for v in ("teacher_effect", "lesson_effect", "teacher_quality", "teacher_shared_bias")
        ]
    )
    bad = mismatches(draws, mean, var)
    if plant in (None, "crossed", "per_level"):
        assert not bad, bad
    else:
        assert bad, f"planted error '{plant}' went unnoticed"


def test_large_designs_use_every_kth_draw(monkeypatch):
    from llm_measure.families.common import unit_scores

    ratings, outcome, design = tiny_shared_bias_study(1.0)
    posterior = _posterior(_random_point(design, np.random.default_rng(4)), DIMS).assign_coords(
        component=design.components, item=design.items
    )
    monkeypatch.setattr(unit_scores, "MAX_CELL_DRAWS", design.n_cells * 100)
    scores = shared_bias_unit_scores(posterior, design, np.random.default_rng(7))
    assert scores.attrs["thinned_every"] == N // 100
    assert np.array_equal(scores["draw"].to_numpy(), np.arange(0, N, N // 100))
