"""Plain estimators against independently computed values, and the cluster bootstrap."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from llm_measure.families.shared_bias.simulator import SimConfig, simulate
from llm_measure.stats import agreement as ag


def test_kendall_tau_b_with_ties_matches_hand_count():
    # x = [1, 2, 2, 3], y = [1, 3, 2, 2]: of the 6 pairs, concordant (1,2),(1,3),(1,4) = 3,
    # discordant (2,4) = 1, (2,3) tied in x, (3,4) tied in y. τ-b = (3 − 1) / √(5 · 5) = 0.4.
    assert ag.kendall_tau_b([1, 2, 2, 3], [1, 3, 2, 2]) == pytest.approx(0.4, abs=1e-12)


def test_spearman_matches_pearson_of_ranks():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50)
    expected = np.corrcoef(stats.rankdata(x), stats.rankdata(y))[0, 1]
    assert ag.spearman_rho(x, y) == pytest.approx(expected, abs=1e-12)


def test_quadratic_weighted_kappa_by_hand():
    # x = [1, 2, 3], y = [1, 3, 3]: observed cells (1,1), (2,3), (3,3), each 1/3.
    # Σ w·O = (0 + 1 + 0) / 3 = 1/3. Marginals x: (1/3, 1/3, 1/3), y: (1/3, 0, 2/3):
    # Σ w·E = (1/3)·[(0·1/3 + 1·0 + 4·2/3) + (1·1/3 + 0 + 1·2/3) + (4·1/3 + 1·0 + 0)]
    #       = (1/3)·(8/3 + 1 + 4/3) = 5/3.  κ = 1 − (1/3)/(5/3) = 0.8.
    assert ag.quadratic_weighted_kappa([1, 2, 3], [1, 3, 3]) == pytest.approx(0.8, abs=1e-12)
    assert ag.quadratic_weighted_kappa([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)


def test_icc_a1_by_hand_and_its_absolute_agreement():
    # Rows (1,2), (2,3), (3,4): y = x + 1. Grand mean 2.5; MSR = 2·((1.5−2.5)² + 0 + 1)/2
    # = 2; MSC = 3·(0.25 + 0.25)/1 = 1.5; SSE = 5.5 − 4 − 1.5 = 0 → MSE = 0.
    # ICC(A,1) = 2 / (2 + 0 + 2·1.5/3) = 2/3: consistent, but an offset costs agreement.
    assert ag.icc_a1([1, 2, 3], [2, 3, 4]) == pytest.approx(2 / 3, abs=1e-12)
    assert ag.icc_a1([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)


def test_dcor2_identical_independent_and_nonlinear():
    rng = np.random.default_rng(1)
    x = rng.normal(size=400)
    assert ag.dcor2_bias_corrected(x, x) == pytest.approx(1.0, abs=1e-12)
    # independent: the bias-corrected statistic is unbiased for 0; its SD at n = 400 is
    # about 1/n ≈ 0.003, so |dCor²| < 0.02 is far beyond sampling noise
    assert abs(ag.dcor2_bias_corrected(x, rng.normal(size=400))) < 0.02
    # y = x² is uncorrelated with x but dependent: dCor² sees it (population value ≈ 0.2)
    assert ag.dcor2_bias_corrected(x, x**2) > 0.1
    assert abs(ag.pearson_r(x, x**2)) < 0.15


def test_disattenuated():
    assert ag.disattenuated(0.3, 0.5, 0.72) == pytest.approx(0.3 / 0.6)
    assert np.isnan(ag.disattenuated(0.3, -0.1))


@pytest.fixture(scope="module")
def sim():
    ratings, outcome, truth = simulate(SimConfig(teachers=60, seed=3))
    return ag.segment_table(ratings), outcome.set_index("teacher")["outcome"], truth


def test_segment_table_and_matrix(sim):
    wide, _, _ = sim
    # 60 teachers × 2 lessons × 2 segments × 2 items, one expert and 4 model columns
    assert wide.shape == (480, 4 + 1 + 4)
    m = ag.agreement_matrix(wide, "ITEM1", "tau_b")
    sub = wide[wide["item"] == "ITEM1"]
    assert m.loc["M1", "expert"] == pytest.approx(
        stats.kendalltau(sub["M1"], sub["expert"]).statistic, abs=1e-12
    )
    # the simulation's models share half their error: models agree with each other more
    # than with the expert (paper claim 1)
    models = ag.model_columns(wide)
    mm = np.nanmean(m.loc[models, models].to_numpy())
    mh = m.loc[models, "expert"].mean()
    assert mm > mh + 0.1


def test_bootstrap_interval_covers_estimate_and_is_reproducible(sim):
    wide, outcome, _ = sim

    def statistic(frame):
        return ag.outcome_alignment(frame, outcome, "expert")

    a = ag.bootstrap(wide, statistic, "teacher", n_boot=60, seed=5, progress=False)
    b = ag.bootstrap(wide, statistic, "teacher", n_boot=60, seed=5, progress=False)
    pd.testing.assert_frame_equal(a, b)
    table = ag.with_intervals(statistic(wide), a).set_index("statistic")
    tau = table.loc["tau_b"]
    assert tau["q05"] < tau["estimate"] < tau["q95"]
    # the teacher bootstrap's spread of τ over 60 teachers is about 0.07 (SE of τ ≈
    # √(2(2n+5)/(9n(n−1))) ≈ 0.09 under independence; less with a real association)
    assert 0.05 < tau["q95"] - tau["q05"] < 0.5


def test_lesson_resample_keeps_teachers():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "teacher": ["A", "A", "B", "B"],
            "lesson": ["a1", "a2", "b1", "b2"],
            "segment": "1",
            "item": "I",
            "x": [1.0, 2.0, 3.0, 4.0],
        }
    )
    out = ag.resample(frame, rng, "lesson")
    assert sorted(out["teacher"]) == ["A", "A", "B", "B"]
    assert set(out.loc[out["teacher"] == "A", "x"]) <= {1.0, 2.0}
    out = ag.resample(frame, rng, "teacher")
    assert len(out) == 4 and out["teacher"].str.contains("#").all()


def _u_centred_dcor2(x, y):
    """The textbook O(n²) bias-corrected dCor² (U-centred distance matrices), as reference."""

    def centred(v):
        d = np.abs(v[:, None] - v[None, :])
        n = len(v)
        rows = d.sum(axis=1) / (n - 2)
        out = d - rows[:, None] - rows[None, :] + d.sum() / ((n - 1) * (n - 2))
        np.fill_diagonal(out, 0.0)
        return out

    a, b = centred(np.asarray(x, float)), centred(np.asarray(y, float))
    return (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())


def test_dcor2_from_the_dcor_package_matches_the_u_centred_definition():
    rng = np.random.default_rng(7)
    x = rng.normal(size=300)
    y = np.rint(x + rng.normal(size=300))  # ties, as rating scales have
    assert ag.dcor2_bias_corrected(x, y) == pytest.approx(_u_centred_dcor2(x, y), abs=1e-9)
    assert np.isnan(ag.dcor2_bias_corrected(x, np.ones(300)))


@pytest.mark.parametrize("scale", ["whole scores", "continuous"])
def test_weighted_statistics_equal_the_estimators_on_each_resample(scale, monkeypatch):
    """The vectorised bootstrap computes each resample's statistics from the rows' copies
    (weights); on every resample they must equal the scalar estimators applied to the
    expanded resample (dCor² on its distinct rows), up to rounding."""
    rng = np.random.default_rng(11)
    n = 90
    x = rng.normal(size=n)
    y = x + rng.normal(size=n)
    if scale == "whole scores":
        x, y = np.clip(np.rint(1.5 * x + 4), 1, 7), np.clip(np.rint(y + 4), 1, 7)
    x[5] = np.nan  # a missing rating drops its row
    weights = rng.integers(0, 3, size=(6, n)).astype(float)
    fast = ag.weighted_pair_stats(x, y, weights)
    monkeypatch.setattr(ag, "MAX_UNITS", 3)  # the one-resample-at-a-time path
    slow = ag.weighted_pair_stats(x, y, weights)
    keep = np.isfinite(x)
    for b in range(len(weights)):
        copies = weights[b, keep].astype(int)
        xe, ye = np.repeat(x[keep], copies), np.repeat(y[keep], copies)
        once = copies > 0
        expected = {
            "tau_b": ag.kendall_tau_b(xe, ye),
            "spearman": ag.spearman_rho(xe, ye),
            "pearson": ag.pearson_r(xe, ye),
            "qwk": ag.quadratic_weighted_kappa(xe, ye),
            "icc": ag.icc_a1(xe, ye),
            "dcor2": _u_centred_dcor2(x[keep][once], y[keep][once]),
        }
        for metric, value in expected.items():
            assert fast[metric][b] == pytest.approx(value, abs=1e-9), (metric, b)
            assert slow[metric][b] == pytest.approx(value, abs=1e-9), (metric, b)


def test_cluster_weights_resample_lessons_within_teachers_and_teachers(sim):
    wide, _, _ = sim
    c = ag.Clusters.of(wide)
    rng = np.random.default_rng(0)
    rows = ag.cluster_weights(c, "lesson", 200, rng)
    assert rows.shape == (200, len(wide))
    # every teacher keeps its number of rows (2 lessons × 2 segments × 2 items), and a
    # lesson's rows are drawn together
    per_teacher = np.stack([np.bincount(c.teacher, weights=r) for r in rows])
    assert np.all(per_teacher == 8)
    same_lesson = c.lesson == c.lesson[0]
    assert np.all(rows[:, same_lesson] == rows[:, [0]])
    # each lesson is drawn 0, 1 or 2 times, about equally often 0 and 2 times
    assert set(np.unique(rows)) == {0.0, 1.0, 2.0}
    teachers = ag.cluster_weights(c, "teacher", 200, rng)
    assert teachers.shape == (200, 60) and np.all(teachers.sum(axis=1) == 60)
    # a teacher is left out of a resample with probability (1 − 1/60)^60 ≈ 0.364
    assert (teachers == 0).mean() == pytest.approx(0.364, abs=0.02)


def test_segment_agreement_estimates_match_the_matrix_and_resample_sensibly(sim):
    wide, outcome, _ = sim
    raters = [ag.EXPERT, *ag.model_columns(wide)]
    est, reps = ag.segment_agreement(wide, raters, ["ITEM1", "ITEM2"], 40, 3)
    m = ag.agreement_matrix(wide, "ITEM1", "dcor2")
    assert est["ITEM1|dcor2|expert|M2"] == pytest.approx(m.loc["expert", "M2"], abs=1e-9)
    assert len(reps) == 40 and reps["ITEM1|tau_b|expert|M1"].std() > 0
    assert est["ITEM2|tau_b|difference"] == pytest.approx(
        est["ITEM2|tau_b|model-model"] - est["ITEM2|tau_b|model-expert"]
    )
    t_est, t_reps = ag.outcome_agreement(wide, outcome, raters, ["ITEM1"], 40, 3)
    plain = ag.outcome_alignment(wide, outcome, "M1")
    for metric, value in plain.items():
        assert t_est[f"all items|M1|{metric}"] == pytest.approx(value, abs=1e-9, nan_ok=True)
    table = ag.with_intervals(t_est, t_reps).set_index("statistic")
    assert table.loc["all items|M1|tau_b", "q05"] < table.loc["all items|M1|tau_b", "q95"]
