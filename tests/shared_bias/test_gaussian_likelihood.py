"""The collapsed Gaussian likelihood equals the brute-force multivariate normal density.

The shared-bias Gaussian model integrates teacher, lesson and segment effects, β, δ, γ and
rating noise out analytically. Here the same marginal density is computed the slow way — one dense covariance
matrix of every rating and outcome of a tiny study — at two random parameter points. The
model drops additive constants, so the test compares differences between the two points.
With a crossed grouping its effects are sampled, not integrated out: the density compared is
that of the ratings given the point's z_crossed (the effects shift the means).
With per-level loadings ([terms] loadings = "per_level") a model's rating loads λ on the
unit's own quality and λ_between on the quality of the groups above it (and the crossed
grouping's); the dense density builds that from its definition, and a version of it that
loads λ everywhere must then disagree with the model (the λ_between terms matter).
"""

import numpy as np
import pytensor.tensor as pt
import pytest
from scipy.stats import multivariate_normal
from tiny_designs import tiny_shared_bias_study, with_crossed_column

from llm_measure.families.shared_bias.design import prepare, unit_level
from llm_measure.families.shared_bias.statistical_model import PRIOR_DEFAULTS, gaussian_model


def _brute_force(ratings, outcome, design, point, between="loading_between"):
    """log N([y; VAM] | mean, Σ) with every cell-level effect in Σ. ``between``: the point's
    loading on the group-level quality (absent with equal loadings: then λ)."""
    items, comps = design.items, design.components
    within = unit_level(comps)
    sd = {c: point["sigma"][comps.index(c)] for c in comps}
    rows = ratings.reset_index(drop=True)
    n = len(rows)
    mean = np.zeros(n)
    crossed = np.zeros((1, len(items)))  # the crossed effects (level, item), given z_crossed
    level = np.zeros(n, dtype=int)
    if "crossed" in comps:
        crossed = sd["crossed"][None, :] * point["z_crossed"]
        level = rows[design.crossed_name].map(design.crossed_levels.index).to_numpy()
    # loadings of each rating on the cell-level latents (segment, β, δ per model, γ per pair)
    keys = {}

    def col(key):
        return keys.setdefault(key, len(keys))

    entries = []  # (row, latent column, coefficient, variance of latent)
    for r, row in rows.iterrows():
        i = items.index(row["item"])
        seg = ("seg", row["teacher"], row["lesson"], row["segment"], i)
        quality = [
            (c, key, sd[c][i] ** 2)
            for c, key in (
                ("teacher", ("teacher", row["teacher"], i)),
                ("lesson", ("lesson", row["teacher"], row["lesson"], i)),
                ("segment", seg),
            )
            if c in comps
        ]
        if row["rater_kind"] == "human":
            h = design.humans.index(row["rater"])
            sev = sd["rater_severity"][i] * point["z_severity"][i, h]
            mean[r] = point["mu"][i] + sev + crossed[level[r], i]
            entries += [(r, col(key), 1.0, v) for _, key, v in quality]
            entries.append((r, col(("hn", r)), 1.0, sd["human_noise"][i] ** 2))
        else:
            m = design.models.index(row["rater"])
            mp = design.model_prompts.index(f"{row['rater']}|{row['prompt']}")
            lam = point["loading"][m, i]
            lam_b = point.get(between, point["loading"])[m, i]
            mean[r] = point["alpha"][mp, i] + lam_b * crossed[level[r], i]
            entries += [(r, col(key), lam if c == within else lam_b, v) for c, key, v in quality]
            entries.append((r, col(("beta",) + seg[1:]), 1.0, sd["shared"][i] ** 2))
            entries.append((r, col(("delta", m) + seg[1:]), 1.0, sd["model_specific"][i] ** 2))
            entries.append(
                (r, col(("gamma", mp) + seg[1:]), 1.0, sd["model_prompt_segment"][i] ** 2)
            )
            entries.append((r, col(("eps", r)), 1.0, sd["model_noise"][i] ** 2))
    # the outcome: κθ·mean over the teacher's cells of (teacher + lesson + segment)
    # + κβ·mean β + noise
    kt, kb = point["kappa"]
    out_rows = []
    for j, row in outcome.reset_index(drop=True).iterrows():
        of_teacher = rows["teacher"] == row["teacher"]
        cells = rows[of_teacher][["lesson", "segment", "item"]]
        cells = cells.drop_duplicates()
        k = len(cells)
        shift = 0.0  # κθ · the mean over the teacher's cells of their crossed effect
        for c in cells.itertuples():
            i = items.index(c.item)
            shift += kt / k * crossed[level[c.Index], i]
            seg = ("seg", row["teacher"], c.lesson, c.segment, i)
            for comp, key in (
                ("teacher", ("teacher", row["teacher"], i)),
                ("lesson", ("lesson", row["teacher"], c.lesson, i)),
                ("segment", seg),
            ):
                if comp in comps:
                    entries.append((n + j, col(key), kt / k, None))
            entries.append((n + j, col(("beta",) + seg[1:]), kb / k, sd["shared"][i] ** 2))
        entries.append((n + j, col(("vam", j)), 1.0, point["sigma_outcome"] ** 2))
        out_rows.append(point["kappa0"] + shift)
    loadings = np.zeros((n + len(outcome), len(keys)))
    variances = np.zeros(len(keys))
    for r, c, coef, v in entries:
        loadings[r, c] += coef
        if v is not None:  # the outcome rows reuse latents the ratings declared
            variances[c] = v
    cov = loadings @ np.diag(variances) @ loadings.T
    y = np.concatenate([rows["score"].to_numpy(), outcome["outcome"].to_numpy()])
    return multivariate_normal(np.concatenate([mean, out_rows]), cov).logpdf(y)


# keep 85% of the ratings: unbalanced, with missing ratings, so cells differ in their pattern
# of model slots and in their number of humans; keep all: balanced, so the cells of a lesson
# and item share one type and the likelihood's per-bin sums add several cells
# crossed: each segment gets one of 3 levels of a grouping crossed with the nesting
# per_level: per-level loadings; "merged": one segment per lesson (the unit's quality is then
# the lesson component, which λ_within loads; the teacher's is λ_between's)
@pytest.mark.parametrize(
    "keep, crossed, per_level",
    [
        (0.85, False, False),
        (1.0, False, False),
        (0.85, True, False),
        (1.0, True, False),
        (0.85, False, True),
        (1.0, True, True),
        ("merged", True, True),
    ],
)
def test_collapsed_likelihood_matches_dense_multivariate_normal(keep, crossed, per_level):
    ratings, outcome, design = tiny_shared_bias_study(0.85 if keep == "merged" else keep)
    if keep == "merged":
        ratings = ratings[ratings["segment"] == ratings["segment"].min()]
    if crossed:
        ratings = with_crossed_column(ratings, 3, seed=4)
    design = prepare(
        ratings, outcome, gamma=True, ordinal=False, crossed="prompt_w" if crossed else None
    )
    assert ("crossed" in design.components) == crossed
    assert ("segment" in design.components) == (keep != "merged")
    assert "model_prompt_segment" in design.components  # every component is exercised
    model = gaussian_model(design, dict(PRIOR_DEFAULTS), per_level=per_level)
    assert ("loading_between" in model.named_vars) == per_level
    loglik = model.compile_fn(
        model.logp(vars=[model["ratings_loglik"], model["outcome_loglik"]], jacobian=False)
    )
    rng = np.random.default_rng(0)
    values = []
    for _ in range(2):
        point = {}
        for rv in model.free_RVs:
            shape = tuple(rv.shape.eval())
            name = rv.name
            draw = rng.normal(size=shape)
            if name in ("sigma", "loading", "loading_between", "sigma_outcome"):
                draw = np.exp(0.4 * draw) * (0.6 if name == "sigma" else 1.0)
            if name == "z_severity":
                draw = draw - draw.mean(axis=-1, keepdims=True)
            point[name] = draw
        inputs = {}
        for rv in model.free_RVs:
            value_var = model.rvs_to_values[rv]
            transform = model.rvs_to_transforms.get(rv)
            x = point[rv.name]
            if transform is not None:
                x = transform.forward(pt.as_tensor_variable(x), *rv.owner.inputs).eval()
            inputs[value_var.name] = x
        fast = loglik(inputs)
        slow = _brute_force(ratings, outcome, design, point)
        broken = _brute_force(ratings, outcome, design, point, between="loading")
        values.append((fast, slow, broken))
    (fast_a, slow_a, broken_a), (fast_b, slow_b, broken_b) = values
    # constants (2π terms, log n of the replicate means) cancel in the difference
    assert fast_a - fast_b == pytest.approx(slow_a - slow_b, rel=1e-8, abs=1e-6)
    if per_level:  # loading λ where λ_between belongs changes the density by far more
        assert abs((fast_a - fast_b) - (broken_a - broken_b)) > 1e-2
