"""Design-based precision of survey shares: checked against an independent computation, a
published example, and the rules for flags, lonely PSUs and domains."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from obsx.indicators import survey
from obsx.indicators.survey import (
    CV_CAUTION,
    CV_UNRELIABLE,
    FLAG_CAUTION,
    FLAG_UNRELIABLE,
    estimate_shares,
    quality_flags,
)

# --- an independent computation (plain numpy, no shared code) ------------------------------------


def taylor_ratio(
    frame: pd.DataFrame, in_domain: np.ndarray, lonely: str = "adjust"
) -> tuple[float, float]:
    """The domain ratio sum(w d yes asked) / sum(w d asked) and its Taylor-linearised standard
    error, written out: z_i = d_i (y_i - R x_i) / X, PSU totals of w z, and
    v = sum_h n_h / (n_h - 1) sum_j (z_hj - mean_h)^2 over the whole design (PSUs nested in
    strata). A stratum with one PSU is centred at the grand mean of all PSU totals (R survey's
    lonely.psu = "adjust"; for a ratio that mean is 0, since sum(w z) = Y - R X = 0), or left
    out with ``lonely="remove"``."""
    d = in_domain.astype(float)
    asked = frame["asked"].to_numpy(dtype=float)
    x = asked * d
    y = frame["yes"].to_numpy(dtype=float) * x
    w = frame["weight"].to_numpy(dtype=float)
    total_x = np.sum(w * x)
    ratio = np.sum(w * y) / total_x
    z = d * (y - ratio * x) / total_x
    psu_totals = pd.Series(w * z).groupby([frame["stratum"], frame["psu"]]).sum()
    grand_mean = psu_totals.mean()
    variance = 0.0
    for _, totals in psu_totals.groupby(level=0):
        n = len(totals)
        if n == 1 and lonely == "remove":
            continue
        if n == 1:
            variance += (totals.iloc[0] - grand_mean) ** 2
        else:
            variance += n / (n - 1) * np.sum((totals - totals.mean()) ** 2)
    return ratio, math.sqrt(variance)


def domain_degrees_of_freedom(frame: pd.DataFrame, in_domain: np.ndarray) -> int:
    """PSUs holding respondents of the domain minus the strata holding them."""
    held = frame[in_domain & frame["asked"].astype(bool).to_numpy()]
    return held.groupby(["stratum", "psu"]).ngroups - held["stratum"].nunique()


def logit_interval(p: float, se: float, df: int) -> tuple[float, float]:
    t = stats.t.ppf(0.975, df)
    centre, half = math.log(p / (1 - p)), t * se / (p * (1 - p))
    return 1 / (1 + math.exp(-(centre - half))), 1 / (1 + math.exp(-(centre + half)))


# Three strata with 3, 2 and 2 PSUs; PSU codes repeat across strata (they are different PSUs).
# Two domains; PSU A/3 holds no "north" respondent; two rows were not asked (one with yes = 1).
DESIGN = pd.DataFrame(
    [
        ("A", "1", 1.5, 1, 1, "north"),
        ("A", "1", 2.0, 0, 1, "south"),
        ("A", "1", 1.0, 0, 0, "north"),
        ("A", "2", 2.5, 1, 1, "north"),
        ("A", "2", 1.2, 1, 1, "south"),
        ("A", "3", 3.0, 0, 1, "south"),
        ("A", "3", 1.8, 0, 1, "south"),
        ("B", "1", 2.2, 1, 1, "north"),
        ("B", "1", 0.9, 0, 1, "north"),
        ("B", "1", 1.4, 1, 1, "south"),
        ("B", "2", 3.1, 0, 1, "north"),
        ("B", "2", 2.7, 1, 0, "south"),
        ("B", "2", 1.6, 1, 1, "south"),
        ("C", "1", 4.0, 0, 1, "north"),
        ("C", "1", 3.5, 1, 1, "south"),
        ("C", "2", 2.9, 1, 1, "north"),
        ("C", "2", 1.1, 0, 1, "north"),
        ("C", "2", 2.3, 0, 1, "south"),
    ],
    columns=["stratum", "psu", "weight", "yes", "asked", "geo"],
)


# The same with a fourth stratum of one PSU.
LONELY = pd.concat(
    [
        DESIGN,
        pd.DataFrame(
            [("D", "1", 2.0, 1, 1, "north"), ("D", "1", 1.0, 0, 1, "south")],
            columns=DESIGN.columns,
        ),
    ],
    ignore_index=True,
)


def shares(frame: pd.DataFrame, domains=("geo",)) -> pd.DataFrame:
    result = estimate_shares(frame, yes="yes", asked="asked", domains=list(domains))
    return result.set_index(list(domains)) if domains else result


def test_domain_shares_match_the_written_out_taylor_linearisation():
    result = shares(DESIGN)
    assert list(result.index) == ["north", "south"]
    for geo in ("north", "south"):
        in_domain = (DESIGN["geo"] == geo).to_numpy()
        ratio, se = taylor_ratio(DESIGN, in_domain)
        row = result.loc[geo]
        assert row["estimate"] == pytest.approx(ratio, abs=1e-12)
        assert row["se"] == pytest.approx(se, abs=1e-9)
        assert row["cv"] == pytest.approx(se / ratio, abs=1e-9)
        df = domain_degrees_of_freedom(DESIGN, in_domain)
        assert row["df"] == df
        low, high = logit_interval(ratio, se, df)
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low), pytest.approx(high))
        asked = DESIGN[in_domain & (DESIGN["asked"] == 1)]
        assert row["respondents"] == len(asked)
        assert row["denominator"] == pytest.approx(asked["weight"].sum())
        assert row["numerator"] == pytest.approx(asked.loc[asked["yes"] == 1, "weight"].sum())


def test_domains_of_several_columns_and_the_whole_sample():
    by_geo_and_psu_code = shares(DESIGN, ("geo", "psu"))
    assert len(by_geo_and_psu_code) == 5  # no "north" respondent holds PSU code 3
    for (geo, code), row in by_geo_and_psu_code.iterrows():
        in_domain = ((DESIGN["geo"] == geo) & (DESIGN["psu"] == code)).to_numpy()
        ratio, se = taylor_ratio(DESIGN, in_domain)
        assert (row["estimate"], row["se"]) == (pytest.approx(ratio), pytest.approx(se, abs=1e-9))
    whole = shares(DESIGN, ())
    ratio, se = taylor_ratio(DESIGN, np.ones(len(DESIGN), dtype=bool))
    assert len(whole) == 1
    assert (whole["estimate"][0], whole["se"][0]) == (pytest.approx(ratio), pytest.approx(se))
    assert whole["df"][0] == 7 - 3


def test_rows_not_asked_count_in_neither_sum_whatever_their_answer():
    changed = DESIGN.assign(yes=DESIGN["yes"].where(DESIGN["asked"] == 1, 1 - DESIGN["yes"]))
    pd.testing.assert_frame_equal(shares(changed), shares(DESIGN))


def test_domain_estimation_keeps_the_whole_design_and_differs_from_cutting_the_sample():
    """Estimating "north" on the rows of "north" alone drops PSU A/3 (no north respondent), so
    stratum A looks like 2 PSUs instead of 3 with one contributing zero: a different, wrong
    variance. The point estimate is the same either way."""
    domain = shares(DESIGN).loc["north"]
    cut = shares(DESIGN[DESIGN["geo"] == "north"]).loc["north"]
    ratio, se = taylor_ratio(DESIGN, (DESIGN["geo"] == "north").to_numpy())
    assert domain["se"] == pytest.approx(se, abs=1e-9)
    assert cut["estimate"] == pytest.approx(domain["estimate"])
    assert cut["se"] < domain["se"] - 1e-3  # here, as usually, cutting understates it
    assert cut["se"] != pytest.approx(se, rel=1e-3)


def test_a_respondent_with_no_domain_value_stays_in_the_design():
    unknown = DESIGN.assign(geo=DESIGN["geo"].where(DESIGN.index != 1, None))
    elsewhere = DESIGN.assign(geo=DESIGN["geo"].where(DESIGN.index != 1, "elsewhere"))
    assert list(shares(unknown).index) == ["north", "south"]
    pd.testing.assert_series_equal(shares(unknown).loc["north"], shares(elsewhere).loc["north"])


def test_a_stratum_with_a_single_psu_is_centred_at_the_grand_mean():
    result = shares(LONELY)
    for geo in ("north", "south"):
        in_domain = (LONELY["geo"] == geo).to_numpy()
        ratio, se = taylor_ratio(LONELY, in_domain)
        assert result.loc[geo, "se"] == pytest.approx(se, abs=1e-9)
        # The lonely stratum adds variance: it is not dropped as if it were certain.
        assert result.loc[geo, "se"] > taylor_ratio(LONELY, in_domain, lonely="remove")[1] + 1e-3
    # Its PSU adds no degree of freedom (1 PSU - 1 stratum).
    assert result.loc["north", "df"] == shares(DESIGN).loc["north", "df"]


def test_domains_estimated_in_batches_keep_the_whole_design(monkeypatch):
    together = shares(LONELY, ("geo", "psu"))
    monkeypatch.setattr(survey, "DOMAINS_PER_CALL", 1)
    one_by_one = shares(LONELY, ("geo", "psu"))
    pd.testing.assert_frame_equal(one_by_one, together, rtol=1e-12)
    for (geo, code), row in one_by_one.iterrows():
        in_domain = ((LONELY["geo"] == geo) & (LONELY["psu"] == code)).to_numpy()
        assert row["se"] == pytest.approx(taylor_ratio(LONELY, in_domain)[1], abs=1e-9)


def test_a_domain_where_nobody_said_yes_has_no_cv_and_is_unreliable():
    result = shares(DESIGN.assign(yes=DESIGN["yes"].where(DESIGN["geo"] != "north", 0)))
    north = result.loc["north"]
    assert (north["estimate"], north["se"], north["numerator"]) == (0.0, 0.0, 0.0)
    assert math.isnan(north["cv"])
    assert math.isnan(north["ci_low"]) and math.isnan(north["ci_high"])
    assert north["flag"] == FLAG_UNRELIABLE
    assert result.loc["south", "se"] > 0


def test_nobody_said_yes_anywhere():
    result = shares(DESIGN.assign(yes=0))
    assert list(result["estimate"]) == [0.0, 0.0]
    assert list(result["se"]) == [0.0, 0.0]
    assert list(result["flag"]) == [FLAG_UNRELIABLE, FLAG_UNRELIABLE]


def test_a_domain_where_everybody_said_yes_is_unreliable_too():
    south = shares(DESIGN.assign(yes=1)).loc["south"]
    assert (south["estimate"], south["se"], south["cv"]) == (1.0, 0.0, 0.0)
    assert south["flag"] == FLAG_UNRELIABLE


def test_flags_follow_the_cv_thresholds():
    cv = pd.Series([0.0, 0.1, CV_CAUTION, 0.1500001, 0.2, CV_UNRELIABLE, 0.3000001, 2.0, np.nan])
    flags = quality_flags(pd.Series(0.3, index=cv.index), cv)
    assert (
        list(flags)
        == ["", "", "", "caution", "caution", "caution", "unreliable"] + ["unreliable"] * 2
    )
    assert FLAG_CAUTION == "caution"
    # Estimates of exactly 0 or 1 are unreliable whatever their cv.
    assert list(quality_flags(pd.Series([0.0, 1.0, 0.5]), pd.Series([np.nan, 0.0, 0.0]))) == [
        "unreliable",
        "unreliable",
        "",
    ]


def test_flag_of_each_domain_agrees_with_its_cv():
    rng = np.random.default_rng(7)
    n = 4000
    sizes = np.geomspace(1, 60, 30)  # domains of 4 to 400 respondents
    frame = pd.DataFrame(
        {
            "stratum": rng.integers(0, 20, n).astype(str),
            "psu": rng.integers(0, 4, n).astype(str),
            "weight": rng.uniform(50, 500, n),
            "yes": rng.random(n) < 0.3,
            "asked": rng.random(n) < 0.95,
            "geo": rng.choice(30, n, p=sizes / sizes.sum()).astype(str),
        }
    )
    result = estimate_shares(frame, yes="yes", asked="asked", domains=["geo"])
    assert len(result) == 30
    expected = np.select(
        [result["cv"].isna() | (result["cv"] > 0.30), result["cv"] > 0.15],
        ["unreliable", "caution"],
        "",
    )
    assert list(result["flag"]) == list(expected)
    assert {"", "caution", "unreliable"} <= set(result["flag"])
    inner = result[(result["estimate"] > 0) & (result["df"] > 0)]
    assert len(inner) >= 25
    assert (inner["ci_low"] > 0).all() and (inner["ci_high"] < 1).all()
    assert (inner["ci_low"] < inner["estimate"]).all()
    assert (inner["estimate"] < inner["ci_high"]).all()


def test_refuses_data_it_cannot_estimate_from():
    with pytest.raises(ValueError, match="weight"):
        shares(DESIGN.assign(weight=DESIGN["weight"].where(DESIGN.index != 0, -1.0)))
    with pytest.raises(ValueError, match="asked have no value in yes"):
        shares(DESIGN.assign(yes=DESIGN["yes"].astype("Float64").where(DESIGN.index != 0)))
    with pytest.raises(ValueError, match="0/1"):
        shares(DESIGN.assign(yes=DESIGN["yes"] * 2))
    with pytest.raises(KeyError, match="region"):
        estimate_shares(DESIGN, yes="yes", asked="asked", domains=["region"])


# --- a published example --------------------------------------------------------------------------


def test_matches_r_survey_on_the_published_apisrs_example():
    """R survey 4.5, as published by PSI AIMS CAMIS ("Survey Summary Statistics using R"):

        srs_design <- svydesign(id = ~1, fpc = ~fpc, data = apisrs)
        svymean(~sch.wide, srs_design)           # No 0.185, Yes 0.815, SE 0.0271
        confint(props, df = degf(srs_design))    # No 0.1316041 .. 0.2383959

    apisrs is a simple random sample of n = 200 of the N = 6194 California schools (fpc = 6194,
    pw = N / n = 30.97 in every row), so the share of "No" and its standard error depend only on
    n and the number of schools answering "No": 37 (0.185 * 200). Each school is its own PSU in
    one stratum. R applies the finite population correction, which this module does not (the
    with-replacement approximation): for one stratum sampled at random the two variances differ
    by exactly the factor 1 - n/N. The published Wald interval gives the published SE to seven
    digits: half its width over t(0.975, 199)."""
    n, population, said_no = 200, 6194, 37
    frame = pd.DataFrame(
        {
            "stratum": "california",
            "psu": [f"school{i}" for i in range(n)],
            "weight": population / n,
            "no": [1] * said_no + [0] * (n - said_no),
            "yes": [0] * said_no + [1] * (n - said_no),
            "asked": 1,
        }
    )
    no = estimate_shares(frame, yes="no", asked="asked", domains=[]).iloc[0]
    yes = estimate_shares(frame, yes="yes", asked="asked", domains=[]).iloc[0]
    fpc = math.sqrt(1 - n / population)
    assert round(no["estimate"], 3) == 0.185
    assert round(yes["estimate"], 3) == 0.815
    assert round(no["se"] * fpc, 4) == 0.0271
    assert round(yes["se"] * fpc, 4) == 0.0271
    assert no["df"] == 199
    published_se = (0.2383959 - 0.1316041) / 2 / stats.t.ppf(0.975, 199)
    assert no["se"] * fpc == pytest.approx(published_se, abs=1e-7)
