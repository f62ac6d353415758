"""Recovery under a grouping crossed with the nesting (HANNA: stories nest in generators and
are crossed with writing prompts).

Until src.simulate has a crossed structure, ``simulate_crossed`` draws the ratings here from
the Gaussian shared-bias model's own equations (docs/models.md), with numpy; the fit is the
real model (prepare(..., crossed=...), gaussian_model, NUTS). The design's checks are fast;
the two fits are in the slow tier (about 80 s each on 2 busy cores, mostly nutpie's compile).

Tolerance. One seeded replicate, three headline quantities: σ_crossed, σ_teacher (the
generators) and the shared share. Each is asserted inside its central 99% interval: under a
calibrated posterior each misses with probability 1%, all three cover with probability
≥ 97%, while a fit that ignored the crossed effects or put them in the wrong place misses
by many posterior SDs. The intervals are wide (8 crossed levels, 8 generators: the σ's rest
on 8 effects each), so the test also asserts they are informative: the share's 90% interval
narrower than 0.35 and σ_crossed's 5% quantile above zero's neighbourhood (> 0.1), i.e. the
data, not the prior, show the crossed effects.
"""

import numpy as np
import pandas as pd
import pytest

from llm_measure.families.shared_bias.design import prepare
from llm_measure.families.shared_bias.statistical_model import PRIOR_DEFAULTS, gaussian_model
from llm_measure.fitting.sampling import sample

TRUTH = {
    "teacher": 0.6,
    "lesson": 0.5,
    "crossed": 0.7,
    "human_noise": 0.6,
    "shared": 0.5,
    "model_specific": 0.3,
    "model_noise": 0.4,
}


def simulate_crossed(
    seed: int,
    generators=8,
    prompts=8,
    units_per_cell=3,
    humans=3,
    models=4,
    model_prompts=2,
    sd=TRUTH,
) -> pd.DataFrame:
    """A long ratings table: units (stories) nested in generators and crossed with writing
    prompts (column ``writing_prompt``), rated by every human and every model × prompt once.
    Mapped as the units spec maps one nesting level: teacher = generator, lesson = segment
    = unit. θ = μ + generator + unit + prompt effect; a human rates θ + ε (the humans are one
    exchangeable crowd: one rater name, no severity), model m α[m, p] + λ[m](θ − μ) + β +
    δ[m] + ε."""
    rng = np.random.default_rng(seed)
    g_of_u = np.repeat(np.arange(generators), prompts * units_per_cell)
    w_of_u = np.tile(np.repeat(np.arange(prompts), units_per_cell), generators)
    n_units = len(g_of_u)
    quality = (
        rng.normal(0, sd["teacher"], generators)[g_of_u]
        + rng.normal(0, sd["lesson"], n_units)
        + rng.normal(0, sd["crossed"], prompts)[w_of_u]
    )
    mu = 3.0
    rows = []

    def add(kind, rater, prompt, score):
        rows.extend(
            {
                "teacher": f"g{g_of_u[u]}",
                "lesson": f"s{u}",
                "segment": f"s{u}",
                "writing_prompt": f"w{w_of_u[u]}",
                "item": "quality",
                "rater_kind": kind,
                "rater": rater,
                "prompt": prompt,
                "score": score[u],
            }
            for u in range(n_units)
        )

    for _ in range(humans):  # one exchangeable crowd (HANNA's slots are not people)
        add("human", "crowd", "", mu + quality + rng.normal(0, sd["human_noise"], n_units))
    beta = rng.normal(0, sd["shared"], n_units)
    loading = np.exp(rng.normal(0, 0.2, models))
    for m in range(models):
        delta = rng.normal(0, sd["model_specific"], n_units)
        for p in range(model_prompts):
            alpha = rng.normal(3.0, 0.5)
            add(
                "model",
                f"m{m}",
                f"p{p}",
                alpha
                + loading[m] * quality
                + beta
                + delta
                + rng.normal(0, sd["model_noise"], n_units),
            )
    return pd.DataFrame(rows)


def shared_share(sd: dict) -> float:
    err = [sd[c] ** 2 for c in ("shared", "model_specific", "model_noise")]
    return err[0] / sum(err)


def fit(table: pd.DataFrame, crossed: str | None):
    design = prepare(table, None, gamma=True, ordinal=False, crossed=crossed)
    model = gaussian_model(design, dict(PRIOR_DEFAULTS))
    tree, _ = sample(
        model,
        "nutpie",
        draws=400,
        tune=400,
        chains=2,
        seed=11,
        progress=False,
        cores=2,
        mass_matrix="low_rank",
    )
    assert int(tree["sample_stats"]["diverging"].sum()) == 0
    return design, tree["posterior"].to_dataset()


def test_prepare_adds_the_crossed_component_after_the_nesting():
    table = simulate_crossed(seed=1, generators=2, prompts=3)
    design = prepare(table, None, gamma=True, ordinal=False, crossed="writing_prompt")
    # one segment per lesson: segment merged into lesson; crossed follows the nesting
    assert design.components[:3] == ["teacher", "lesson", "crossed"]
    assert design.crossed_levels == ["w0", "w1", "w2"]
    assert design.crossed_name == "writing_prompt"
    # each cell's level is its unit's writing prompt
    prompt_of = dict(zip(table["lesson"], table["writing_prompt"]))
    got = [design.crossed_levels[k] for k in design.cell_crossed]
    want = [prompt_of[design.lessons[k].split("|")[1]] for k in design.cell_lesson]
    assert got == want


def test_a_crossed_column_that_varies_within_a_unit_is_an_error():
    from llm_measure.errors import InputError

    table = simulate_crossed(seed=1, generators=2, prompts=3)
    table.loc[0, "writing_prompt"] = "w2"  # unit s0 is w0 in its other rows
    with pytest.raises(InputError, match="constant within each unit"):
        prepare(table, None, gamma=True, ordinal=False, crossed="writing_prompt")


def test_one_crossed_level_adds_no_component():
    table = simulate_crossed(seed=1, generators=2, prompts=1)
    design = prepare(table, None, gamma=True, ordinal=False, crossed="writing_prompt")
    assert "crossed" not in design.components


@pytest.mark.slow  # about 80 s (most of it compiling for nutpie) on 2 busy cores
def test_crossed_design_recovers_sigmas_and_shared_share():
    design, post = fit(simulate_crossed(seed=11), crossed="writing_prompt")
    sigma = post["sigma"].sel(item="quality")
    err = sum(sigma.sel(component=c) ** 2 for c in ("shared", "model_specific", "model_noise"))
    share = sigma.sel(component="shared") ** 2 / err
    checks = {
        "sigma[crossed]": (sigma.sel(component="crossed"), TRUTH["crossed"]),
        "sigma[teacher]": (sigma.sel(component="teacher"), TRUTH["teacher"]),
        "share[shared]": (share, shared_share(TRUTH)),
    }
    for name, (draws, truth) in checks.items():
        low, high = np.quantile(draws, [0.005, 0.995])
        assert low <= truth <= high, (name, low, high, truth)
    share_lo, share_hi = np.quantile(share, [0.05, 0.95])
    assert share_hi - share_lo < 0.35, (share_lo, share_hi)
    assert np.quantile(sigma.sel(component="crossed"), 0.05) > 0.1
    assert post["z_crossed"].sizes["crossed"] == len(design.crossed_levels)


@pytest.mark.slow  # about 80 s
def test_without_the_crossed_grouping_the_unit_variance_absorbs_it():
    """The negative control: the same data fitted without declaring the crossed grouping
    put the writing prompts' variance (0.7² = 0.49) into the units' (0.5² = 0.25): the unit
    SD's 99% interval lies above its truth, where the crossed fit's covers it."""
    table = simulate_crossed(seed=11)
    _, post = fit(table, crossed=None)
    unit_sd = post["sigma"].sel(item="quality", component="lesson")
    low, high = np.quantile(unit_sd, [0.005, 0.995])
    assert low > TRUTH["lesson"], (low, high)
