"""summary.csv's quantities are draws in posterior.nc's ``derived`` group: az.summary of the
group gives the numbers summary.csv holds, and the new quantities (D-study grids, effective
number of independent models) follow their definitions."""

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from llm_measure.fitting.derived_draws import to_dataset, to_entries


def _az_rows(node, var):
    return az.summary(
        node, group="derived", var_names=[var], kind="all_median", ci_prob=0.9, round_to="none"
    )


@pytest.mark.parametrize(
    "fit", ["gstudy_fit", pytest.param("shared_bias_fit", marks=pytest.mark.slow)]
)
def test_az_summary_of_derived_group_equals_summary_csv(fit, request):
    out, tree = request.getfixturevalue(fit)
    summary = pd.read_csv(out / "summary.csv")
    checked = 0
    for label in tree.children:
        node = tree[label]
        entries = to_entries(node["derived"].to_dataset())
        for row in summary.itertuples():
            if (row.item, row.quantity) not in entries:
                continue
            draws = entries[(row.item, row.quantity)].to_numpy().ravel()
            q05, med, q95 = np.quantile(draws, [0.05, 0.5, 0.95])
            # summary.csv is written with 6 significant digits
            assert (med, q05, q95) == pytest.approx(
                (row.median, row.q05, row.q95), rel=1e-5, abs=1e-9
            )
            checked += 1
        # and through ArviZ itself, one whole variable at a time
        for var in ("share", "Erho2", "kappa_beta", "effective_models"):
            if var not in node["derived"].data_vars:
                continue
            table = _az_rows(node, var)
            for name, r in table.iterrows():
                da = node["derived"].to_dataset()[var]
                extra = [d for d in da.dims if d not in ("chain", "draw")]
                inside = name[len(var) + 1 : -1].split(", ") if extra else []
                cell = da.sel(dict(zip(extra, _typed(da, extra, inside))))
                template = da.attrs["summary_name"]
                item = dict(zip(extra, inside)).get("item", "pooled")
                other = [
                    f"{float(v):g}" if da[d].dtype.kind == "f" else v
                    for d, v in zip(extra, inside)
                    if d != "item"
                ]
                quantity = template.format(*other) if other else template
                match = summary[(summary["item"] == item) & (summary["quantity"] == quantity)]
                if np.isnan(cell.to_numpy()).all() or np.ptp(cell.to_numpy()) == 0:
                    # undefined, or a constant (effective_models at K = 1): not reported
                    assert match.empty
                    continue
                assert len(match) == 1, (item, quantity)
                m = match.iloc[0]
                assert r["median"] == pytest.approx(m["median"], rel=1e-5, abs=1e-9)
                assert r["eti90_lb"] == pytest.approx(m["q05"], rel=1e-5, abs=1e-9)
                assert r["eti90_ub"] == pytest.approx(m["q95"], rel=1e-5, abs=1e-9)
                assert r["r_hat"] == pytest.approx(m["r_hat"], rel=1e-4, nan_ok=True)
                checked += 1
    assert checked >= len(summary)  # every row of summary.csv met at least once


def _typed(da, dims, labels):
    out = []
    for d, lab in zip(dims, labels):
        kind = da[d].dtype.kind
        out.append(float(lab) if kind == "f" else int(lab) if kind == "i" else lab)
    return out


def test_round_trip_keeps_every_quantity():
    chain, draw = np.arange(2), np.arange(5)
    rng = np.random.default_rng(0)

    def draws():
        return xr.DataArray(
            rng.normal(size=(2, 5)), dims=("chain", "draw"), coords={"chain": chain, "draw": draw}
        )

    derived = {
        ("A", "share[shared]"): draws(),
        ("B", "share[shared]"): draws(),
        ("pooled", "share[shared]"): draws(),
        ("A", "ensemble_error_var[K=inf]"): draws(),
        ("A", "ensemble_error_var[K=16]"): draws(),
        ("pooled", "kappa_beta"): draws(),
        ("pooled", "corr[outcome, human_score]"): draws(),
        ("A", "Erho2"): draws(),
        ("pooled", "sd[outcome_residual]"): draws(),
    }
    ds = to_dataset(derived)
    assert "item" not in ds["kappa_beta"].dims and "item" in ds["share"].dims
    assert list(ds["ensemble_error_var"]["K"].values) == [16.0, np.inf]
    assert float(ds["corr_outcome"].sel(teacher_score="human_score")[1, 2]) == float(
        derived[("pooled", "corr[outcome, human_score]")][1, 2]
    )
    back = to_entries(ds)
    assert set(back) == set(derived)
    for key, da in derived.items():
        np.testing.assert_array_equal(back[key].to_numpy(), da.to_numpy())


def test_dstudy_grid_at_the_spec_sizes_is_erho2(gstudy_fit):
    """At n = the spec's own size the grid's Eρ² and Φ are the reported ones."""
    _, tree = gstudy_fit
    derived = tree["X"]["derived"].to_dataset()
    for facet, n in {"lesson": 4, "segment": 4, "rater": 4}.items():
        for coef in ("Erho2", "Phi"):
            grid = derived[f"dstudy_{coef}"].sel(item="X", facet=facet, n=n)
            np.testing.assert_allclose(grid, derived[coef].sel(item="X"), rtol=1e-12)
    # more raters never lower Eρ² (every error term is divided by the size or unaffected)
    by_n = derived["dstudy_Erho2"].sel(item="X", facet="rater")
    assert (by_n.diff("n") >= -1e-12).all()


@pytest.mark.slow
def test_effective_models_follow_their_definition(shared_bias_fit):
    """K_eff = K / (1 + (K − 1) ρ) with ρ = corr[error_model_model], draw by draw."""
    _, tree = shared_bias_fit
    derived = tree["all"]["derived"].to_dataset()
    rho = derived["corr"].sel(pair="error_model_model")
    assert (derived["effective_models"].sel(K=1.0) == 1.0).all()
    for k in (2.0, 4.0, 16.0):
        expected = k / (1.0 + (k - 1.0) * rho)
        np.testing.assert_allclose(derived["effective_models"].sel(K=k), expected, rtol=1e-12)
    np.testing.assert_allclose(derived["effective_models"].sel(K=np.inf), 1.0 / rho, rtol=1e-12)
    # with a positive shared error, K models are worth fewer than K independent ones
    assert (derived["effective_models"].sel(K=4.0) < 4.0).all()
