"""The ordinal likelihood with teacher and lesson effects integrated out by quadrature
(src/llm_measure/families/gstudy/ordinal_integrated.py) against brute-force integration, its gradient
against finite differences, and the model it builds."""

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.special import expit
from scipy.stats import norm
from testpaths import ROOT

from llm_measure.families.common.ordinal import AnchoredOrdered, compress, median_cut
from llm_measure.families.gstudy import ordinal_integrated as oi
from llm_measure.families.gstudy.family import GStudy
from llm_measure.families.spec import load_spec

Z_CUTS = np.array([-1.2, -0.7, -0.25, 0.25, 0.7, 1.2])  # in latent SDs
SPEC = ROOT / "models" / "gstudy_ordinal_teacher_lesson_rater.toml"


def cut_points(sd_teacher, sd_lesson):
    """Cut points where a fitted model puts them, at fixed quantiles of the latent score
    (SD √(σ_T² + σ_L² + σ_R² + π²/3)), so every category is in use at any σ's: the
    likelihood is evaluated where the posterior is."""
    return Z_CUTS * np.sqrt(sd_teacher**2 + sd_lesson**2 + 0.6**2 + np.pi**2 / 3)


def simulate(rng, sd_teacher, sd_lesson, n_teachers=4, n_lessons=3, n_segments=4, n_raters=3):
    """Compressed rows (teacher, lesson, rater, category, count) and the rater effects."""
    cuts = cut_points(sd_teacher, sd_lesson)
    teacher = rng.normal(0, sd_teacher, n_teachers)
    rater = rng.normal(0, 0.6, n_raters)
    rows = []
    for t in range(n_teachers):
        for j in range(n_lessons):
            lesson, r = rng.normal(0, sd_lesson), rng.integers(n_raters)
            for _ in range(n_segments):
                latent = teacher[t] + lesson + rater[r] + rng.logistic()
                rows.append((t, t * n_lessons + j, r, int(np.sum(latent > cuts))))
    a = np.array(rows)
    (t, l, r, c), count = compress([a[:, 0], a[:, 1], a[:, 2], a[:, 3]])
    return t, l, r, c, count, rater[r]


def brute_force(
    teacher,
    lesson,
    category,
    count,
    eta,
    cuts,
    sd_teacher,
    sd_lesson,
    nested=True,
    n=401,
    width=9.0,
):
    """Σ_t log ∫ N(T; 0, σ_T²) Π_l ∫ N(L; 0, σ_L²) Π_rows P(category | η + T + L)^count dL dT
    by the trapezoid rule on uniform grids over ±9 prior SDs: no node placement, no
    shared code. The integrands are smooth and decay like Gaussians, for which the trapezoid
    rule's error falls as exp(−2π²(width / spacing)²): with 401 points it is far below
    1e-6 whenever a lesson's likelihood is at least a few spacings wide."""
    padded = np.concatenate([[-np.inf], cuts, [np.inf]])

    def trapezoid_log(log_f, grid):  # log ∫ exp(log_f) over the last axis
        w = np.full(len(grid), grid[1] - grid[0])
        w[[0, -1]] *= 0.5
        z = log_f + np.log(w)
        m = z.max(axis=-1, keepdims=True)
        return (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))[..., 0]

    t_grid = np.linspace(-width * sd_teacher, width * sd_teacher, n) if nested else np.zeros(1)
    l_grid = np.linspace(-width * sd_lesson, width * sd_lesson, n)
    total = 0.0
    for t in np.unique(teacher) if nested else [None]:
        rows_t = np.flatnonzero(teacher == t) if nested else np.arange(len(category))
        log_lessons = np.zeros(len(t_grid))
        for l in np.unique(lesson[rows_t]):
            s = t_grid[:, None] + l_grid[None, :]
            log_f = norm.logpdf(l_grid, 0, sd_lesson)[None, :]
            for r in rows_t[lesson[rows_t] == l]:
                u = eta[r] + s
                p = expit(padded[category[r] + 1] - u) - expit(padded[category[r]] - u)
                log_f = log_f + count[r] * np.log(np.maximum(p, 1e-300))
            log_lessons += trapezoid_log(log_f, l_grid)
        if not nested:
            total += log_lessons.sum()
            continue
        total += trapezoid_log(log_lessons + norm.logpdf(t_grid, 0, sd_teacher), t_grid)
    return total


def compiled_loglik(lay, mode="FAST_COMPILE"):
    """The log-likelihood and its gradient as a function; FAST_COMPILE runs the Op's
    `perform` (the compiled kernel, called from Python) without compiling the graph."""
    eta, cuts = pt.dvector("eta"), pt.dvector("cuts")
    sd_in, sd_top = pt.dscalar("sd_in"), pt.dscalar("sd_top")
    ll = oi.integrated_loglik(lay, eta, cuts, sd_in, sd_top if lay.nested else None)
    grads = pytensor.grad(ll, [eta, cuts, sd_in, sd_top] if lay.nested else [eta, cuts, sd_in])
    return pytensor.function(
        [eta, cuts, sd_in, sd_top], [ll, *grads], mode=mode, on_unused_input="ignore"
    )


# σ_T, σ_L (logits; the latent residual SD is 1.81): small, moderate and large, including
# σ_L far below σ_T, where nodes shared across T would miss the narrow kernel
SIGMAS = [
    (0.05, 0.05),
    (0.05, 2.0),
    (0.3, 1.0),
    (1.0, 0.5),
    (2.0, 0.2),
    (2.0, 0.05),
    (3.0, 2.0),
    (0.8, 3.0),
    (5.0, 5.0),
]
N_CATEGORIES = len(Z_CUTS) + 1


@pytest.mark.parametrize("sd_teacher, sd_lesson", SIGMAS)
def test_quadrature_matches_brute_force(sd_teacher, sd_lesson):
    """12 lessons in 4 teachers. The tolerance, 0.01 nats on a log-likelihood of about −80,
    is the size at which an error would start to matter: it changes a posterior density by
    1%. The errors seen over these σ's are at most a few 1e-3."""
    rng = np.random.default_rng(int(100 * sd_teacher + 10 * sd_lesson))
    t, l, r, c, count, eta = simulate(rng, sd_teacher, sd_lesson)
    cuts = cut_points(sd_teacher, sd_lesson)
    lay = oi.layout(c, count, r[:, None], l, t, N_CATEGORIES)
    ours = compiled_loglik(lay)(eta[lay.row_source], cuts, sd_lesson, sd_teacher)[0]
    reference = brute_force(t, l, c, count, eta, cuts, sd_teacher, sd_lesson)
    assert ours == pytest.approx(reference, abs=0.01)


@pytest.mark.parametrize("sd_lesson", [0.1, 1.0, 4.0])
def test_one_level_matches_brute_force(sd_lesson):
    """integrate_out with one component: lessons only, no teacher level (T = 0); 12
    one-dimensional integrals, each a plain adaptive Gauss–Hermite sum, so a tighter 1e-3."""
    rng = np.random.default_rng(5)
    t, l, r, c, count, eta = simulate(rng, 0.0, sd_lesson)
    cuts = cut_points(0.0, sd_lesson)
    lay = oi.layout(c, count, r[:, None], l, None, N_CATEGORIES)
    ours = compiled_loglik(lay)(eta[lay.row_source], cuts, sd_lesson, 1.0)[0]
    reference = brute_force(t, l, c, count, eta, cuts, 1.0, sd_lesson, nested=False)
    assert ours == pytest.approx(reference, abs=1e-3)


@pytest.mark.parametrize("sd_teacher, sd_lesson", [(2.0, 0.2), (0.8, 3.0), (1.0, 0.5)])
def test_gradient_matches_finite_differences(sd_teacher, sd_lesson):
    """The compiled gradient (through the node placement too) against central differences
    of the compiled value. Steps of 1e-5 leave a truncation error of order 1e-10 and a
    rounding error of order 1e-16 · 80 / 1e-5 ≈ 1e-9, so 1e-6 is loose. The σ's cover both
    ways of summing a lesson (nodes shared across T, or per T node)."""
    rng = np.random.default_rng(3)
    t, l, r, c, count, eta = simulate(rng, sd_teacher, sd_lesson)
    lay = oi.layout(c, count, r[:, None], l, t, N_CATEGORIES)
    f = compiled_loglik(lay)
    x = [
        eta[lay.row_source],
        cut_points(sd_teacher, sd_lesson),
        np.array(sd_lesson),
        np.array(sd_teacher),
    ]
    _, *grads = f(*x)
    h = 1e-5
    for k, grad in enumerate(grads):
        flat = np.atleast_1d(x[k]).astype(float)
        for i in range(flat.size):
            step = np.zeros_like(flat)
            step[i] = h
            plus, minus = list(x), list(x)
            plus[k] = (flat + step).reshape(np.shape(x[k]))
            minus[k] = (flat - step).reshape(np.shape(x[k]))
            numeric = (f(*plus)[0] - f(*minus)[0]) / (2 * h)
            assert np.atleast_1d(grad)[i] == pytest.approx(numeric, abs=1e-6)


def test_backends_agree():
    """nutpie runs the Op through PyTensor's numba backend, other samplers through its
    Python `perform`: the same numbers, to rounding. (PyTensor compiles with fast-math
    flags; they once leaked into the kernel and broke its log-sum-exp.)"""
    rng = np.random.default_rng(8)
    t, l, r, c, count, eta = simulate(rng, 2.0, 0.2)
    lay = oi.layout(c, count, r[:, None], l, t, N_CATEGORIES)
    x = (eta[lay.row_source], cut_points(2.0, 0.2), 0.2, 2.0)
    numba_out = compiled_loglik(lay, "NUMBA")(*x)
    python_out = compiled_loglik(lay, "FAST_COMPILE")(*x)
    for a, b in zip(numba_out, python_out):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_layout_shares_identical_lessons_and_widens_one_sided_ones():
    # lessons 0 and 1: same rater, same counts -> one owner; lesson 2: all in the top
    # category -> a one-sided likelihood, more nodes; lesson 3 another rater
    lesson = np.array([0, 0, 1, 1, 2, 3])
    teacher = np.array([0, 0, 1, 1, 1, 1])
    rater = np.array([0, 0, 0, 0, 0, 1])
    category = np.array([2, 3, 2, 3, 6, 3])
    count = np.array([2.0, 1.0, 2.0, 1.0, 4.0, 3.0])
    lay = oi.layout(category, count, rater[:, None], lesson, teacher, 7)
    assert lay.n_owner == 3 and lay.n_top == 2
    assert lay.lesson_owner[0] == lay.lesson_owner[1] != lay.lesson_owner[2]
    assert sorted(lay.owner_nodes) == [oi.INNER_NODES, oi.INNER_NODES, oi.ONE_SIDED_NODES]
    assert list(lay.teacher_start) == [0, 1, 4]


def test_anchored_ordered_transform_round_trips_with_its_jacobian():
    transform = AnchoredOrdered(3)
    cuts = np.array([-13.0, -9.0, -5.0, -1.3, 3.0, 7.3])
    y = transform.forward(pt.as_tensor(cuts)).eval()
    np.testing.assert_allclose(transform.backward(pt.as_tensor(y)).eval(), cuts, rtol=1e-12)
    yv = pt.dvector()
    jac = pytensor.function([yv], pytensor.gradient.jacobian(transform.backward(yv), yv))(y)
    assert transform.log_jac_det(pt.as_tensor(y)).eval() == pytest.approx(
        np.linalg.slogdet(jac)[1], rel=1e-12
    )
    # the CLPC category counts: 42.5% of ratings lie at or below 4, so the 4|5 cut
    assert median_cut(np.arange(7), np.array([10, 172, 729, 1716, 2188, 1068, 302.0]), 7) == 3


def test_shipped_spec_samples_only_sds_raters_and_cut_points():
    """The shipped ordinal spec integrates teacher and lesson out: the model's free
    variables are the SDs, the zero-sum rater effects, their mean and the cut points."""
    spec = load_spec(SPEC)
    assert spec.raw["integrate_out"] == ["teacher", "lesson"]
    rng = np.random.default_rng(1)
    t, l, r, c, count, _ = simulate(rng, 0.8, 1.0)
    table = pd.DataFrame(
        {
            "teacher": [f"T{x}" for x in np.repeat(t, count.astype(int))],
            "lesson": [f"L{x}" for x in np.repeat(l, count.astype(int))],
            "rater": [f"R{x}" for x in np.repeat(r, count.astype(int))],
            "score": np.repeat(c, count.astype(int)) + 1.0,
        }
    )
    model = GStudy().build(spec, "X", table).model
    free = {v.name for v in model.free_RVs}
    # the rater effects: centred ("u_") or not ("z_"), by ratings per rater
    effects = free - {"cutpoints_relative", "mean_rater", "sigma"}
    assert len(effects) == 1 and effects.pop() in ("u_rater", "z_rater")
    assert "cutpoints" in {v.name for v in model.deterministics}
    assert np.isfinite(model.compile_logp()(model.initial_point()))


def test_one_integrated_component_in_a_gstudy(tmp_path):
    """integrate_out = ["teacher"] with lessons sampled: the lesson effects stay in the
    linear predictor, the teacher effects do not, and the log-likelihood is finite."""
    path = tmp_path / "spec.toml"
    path.write_text(
        SPEC.read_text().replace(
            'integrate_out = ["teacher", "lesson"]', 'integrate_out = ["teacher"]'
        )
    )
    rng = np.random.default_rng(2)
    t, l, r, c, count, _ = simulate(rng, 0.8, 1.0)
    reps = count.astype(int)
    table = pd.DataFrame(
        {
            "teacher": np.repeat(t, reps).astype(str),
            "lesson": np.repeat(l, reps).astype(str),
            "rater": np.repeat(r, reps).astype(str),
            "score": np.repeat(c, reps) + 1.0,
        }
    )
    model = GStudy().build(load_spec(path), "X", table).model
    free = {v.name for v in model.free_RVs}
    assert {"z_lesson", "sigma"} <= free and not any("teacher" in name for name in free)
    assert np.isfinite(model.compile_logp()(model.initial_point()))


@pytest.mark.slow
def test_integrated_posterior_matches_explicit_effects(tmp_path):
    """The shipped spec (teacher and lesson integrated out) and the same spec with the
    effects sampled are the same model: the SDs' posterior means must agree within Monte
    Carlo error. 4 combined standard errors: a false alarm has probability about 6e-5 per
    SD, while a quadrature error that mattered would shift the means by far more."""
    import arviz as az
    import xarray as xr

    from llm_measure.cli.fit import main

    rng = np.random.default_rng(11)
    rows = []
    teacher, rater = rng.normal(0, 0.8, 60), rng.normal(0, 0.6, 8)
    cuts = np.array([-3.0, -1.8, -0.6, 0.6, 1.8, 3.0])
    for t in range(60):
        for j in range(3):
            lesson, r = rng.normal(0, 1.0), rng.integers(8)
            for s in range(4):
                latent = teacher[t] + lesson + rater[r] + rng.logistic()
                rows.append(
                    (f"T{t}", f"T{t}L{j}", str(s), "X", f"R{r}", 1 + int(np.sum(latent > cuts)))
                )
    data = tmp_path / "ord.csv"
    pd.DataFrame(rows, columns=["teacher", "lesson", "segment", "item", "rater", "score"]).to_csv(
        data, index=False
    )
    explicit = tmp_path / "explicit.toml"
    explicit.write_text(
        "\n".join(
            line for line in SPEC.read_text().splitlines() if not line.startswith("integrate_out")
        )
    )
    posteriors = {}
    for name, spec in (("integrated", SPEC), ("explicit", explicit)):
        out = tmp_path / name
        assert (
            main(["--model", str(spec), "--data", str(data), "--out", str(out), "--no-progress"])
            == 0
        )
        posteriors[name] = xr.open_datatree(out / "posterior.nc")["X"]["posterior"]["sigma"]
    for comp in ("teacher", "lesson", "rater"):
        means, errors = [], []
        for post in posteriors.values():
            draws = post.sel(component=comp, drop=True)
            means.append(float(draws.mean()))
            errors.append(float(az.mcse(xr.Dataset({"s": draws}), method="mean")["s"]))
        assert abs(means[0] - means[1]) <= 4 * np.hypot(*errors), comp
