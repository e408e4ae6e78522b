"""Design-based precision for survey shares (Taylor linearisation over strata and PSUs).

A survey indicator is a weighted share among the respondents who were asked: for a domain *d*
(an area, a year, a sex...), ``R = sum(w * yes * d) / sum(w * asked * d)``, a ratio estimator.
Its standard error must come from the sample design — strata, primary sampling units (PSUs) and
weights — not from a formula for independent draws. The variance is computed by ``svy``
(``Sample.estimation.prop``; svy is the maintained successor of samplics, validated by its
authors against R's ``survey`` package), not by hand. The choices, in one place:

- **Variance**: Taylor linearisation of the ratio, ultimate-cluster (first-stage, with
  replacement) approximation, no finite population correction — the usual choice for household
  surveys whose sampling fractions are small, and R ``survey``'s default for
  ``svydesign(ids=~psu, strata=~stratum, weights=~weight, nest=TRUE)``. PSU codes are read within
  their stratum (the same code in two strata is two PSUs); strata are the caller's, so several
  surveys can be estimated together once their stratum codes are made unique
  (``"obs1|3"``, ``"obs2|3"``).
- **Domains** are estimated on the whole sample: a respondent outside the domain (another area,
  the other sex, a row with no value in a domain column) or not asked stays in the design with a
  zero contribution, so every stratum and PSU keeps counting. Cutting the sample down to the
  domain first would drop PSUs and misstate (usually understate) the variance.
- **Strata with a single PSU** ("lonely PSUs"): the PSU is centred at the grand mean of all PSU
  totals instead of its stratum mean — svy's ``"center"``, R ``survey``'s
  ``options(survey.lonely.psu = "adjust")``. For a ratio the linearised values sum to zero over
  the sample, so the lonely PSU contributes its squared total rather than nothing (R's
  "remove"), which would treat it as taken with certainty.
- **Confidence interval**: 95%, svy's default for proportions — a Wald interval on the logit
  scale, back-transformed (as Stata's ``svy: proportion`` and R's ``svyciprop(method="logit")``),
  so it stays within 0..1 and is asymmetric near the ends; the quantile is Student's t with the
  domain's design degrees of freedom (``df``): the PSUs holding respondents of the domain minus
  the strata holding them (svy's count; the whole design's #PSU - #strata is larger for a small
  domain, so these intervals are a little wider than with it). The bounds are NaN when
  ``df`` is 0 or the estimate is 0 or 1 (the interval is undefined there).
- **Coefficient of variation** ``cv = se / estimate`` (NaN when the estimate is 0) and a
  **quality flag** after the convention in shared/DOMAIN.md: ``""`` up to ``CV_CAUTION``,
  ``"caution"`` (use with caution) up to ``CV_UNRELIABLE``, ``"unreliable"`` (not reliable: not
  published as a figure) above it. An estimate of 0 or 1 is ``"unreliable"`` too, see
  :func:`estimate_shares`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import svy

# The convention in shared/DOMAIN.md (confirm per office): flagged past 15%, withheld past 30%.
CV_CAUTION = 0.15
CV_UNRELIABLE = 0.30
FLAG_CAUTION = "caution"
FLAG_UNRELIABLE = "unreliable"
CONFIDENCE_LEVEL = 0.95
# svy's name for R survey's lonely.psu = "adjust" (centre a single PSU at the grand mean).
LONELY_PSU_RULE = "center"
# Domains estimated per svy call. svy also returns the covariance between all the estimates of a
# call (a dense k x k matrix, unused here), whose time and memory grow with the square of k: a
# level with thousands of domains is estimated in batches. Each batch still uses the whole design.
DOMAINS_PER_CALL = 200

COLUMNS = [
    "estimate",
    "numerator",
    "denominator",
    "respondents",
    "se",
    "ci_low",
    "ci_high",
    "df",
    "cv",
    "flag",
]

# Working column names, chosen so that no caller's column (and no svy result column) collides.
_STRATUM, _PSU, _WEIGHT = "_svy_stratum", "_svy_psu", "_svy_weight"
_YES, _ASKED, _DOMAIN, _BATCH = "_svy_yes", "_svy_asked", "_svy_domain", "_svy_batch"
_OUTSIDE = -1  # the domain id of rows with no value in a domain column
_BOUND_TOLERANCE = 1e-12  # a share this close to 0 or 1 is 0 or 1


def estimate_shares(
    frame: pd.DataFrame,
    *,
    yes: str,
    asked: str,
    domains: list[str],
    stratum: str = "stratum",
    psu: str = "psu",
    weight: str = "weight",
) -> pd.DataFrame:
    """The weighted share of ``yes`` among the ``asked``, with its design-based precision, for
    every combination of ``domains`` values present among the respondents asked.

    ``frame`` is the whole sample of the design (all respondents of every survey estimated
    together, strata unique across surveys). ``yes`` and ``asked`` are boolean or 0/1 columns;
    a missing ``asked`` means not asked, and ``yes`` is only read where ``asked`` is true. Rows
    not asked contribute zero to both sums and stay in the design. ``domains`` may be empty: one
    row for the whole sample. A row with no value in some domain column belongs to no domain.
    Weights must be positive; stratum and PSU must be filled.

    Returns one row per domain, sorted by the domain columns: the domain columns, then
    ``estimate`` (share, 0..1), ``numerator`` and ``denominator`` (weighted sums of yes and of
    asked), ``respondents`` (unweighted count of asked rows), ``se``, ``ci_low`` and ``ci_high``
    (95%, see the module notes), ``df`` (design degrees of freedom of the domain), ``cv`` and
    ``flag``. Domains with no respondent asked have no share and no row.

    Flags: ``""`` when ``cv <= CV_CAUTION``, ``"caution"`` up to ``CV_UNRELIABLE``,
    ``"unreliable"`` above — and ``"unreliable"`` whenever the estimate is 0 or 1. There the
    linearised standard error is 0, not because the share is known exactly but because every
    respondent of the domain gave the same answer: the sample cannot tell "none" from "too rare
    to be seen in a sample this size", and a ministry that prints "0% victimised" (or "100% feel
    safe") for a district makes a statement the survey cannot support. The cv of 0 is NaN (no
    relative error of zero exists); the cv of 1 is 0, and the flag still says unreliable.
    """
    domains = list(domains)
    _check_columns(frame, [yes, asked, stratum, psu, weight, *domains])
    work = _working_frame(frame, yes=yes, asked=asked, stratum=stratum, psu=psu, weight=weight)
    work[_DOMAIN] = _domain_ids(frame, domains)

    totals = _domain_totals(work)
    totals = totals[(totals.index != _OUTSIDE) & (totals["respondents"] > 0)]
    if totals.empty:
        return pd.DataFrame(columns=[*domains, *COLUMNS])

    precision = _design_precision(work)
    result = totals.join(precision, how="left")
    result["cv"] = _coefficient_of_variation(result["estimate"], result["se"])
    result["flag"] = quality_flags(result["estimate"], result["cv"])
    keys = _domain_keys(frame, domains, work[_DOMAIN])
    result = keys.join(result, how="inner")
    result["respondents"] = result["respondents"].astype("int64")
    result["df"] = result["df"].astype("int64")
    return result[[*domains, *COLUMNS]].reset_index(drop=True)


def quality_flags(estimate: pd.Series, cv: pd.Series) -> pd.Series:
    """The publication flag of each estimate: ``""``, ``"caution"`` or ``"unreliable"`` (see
    :func:`estimate_shares`; NaN cv and estimates of 0 or 1 are unreliable)."""
    cv_values = cv.to_numpy(dtype=float)
    degenerate = _at_bound(estimate.to_numpy(dtype=float))
    unreliable = degenerate | np.isnan(cv_values) | (cv_values > CV_UNRELIABLE)
    caution = ~unreliable & (cv_values > CV_CAUTION)
    flags = np.where(unreliable, FLAG_UNRELIABLE, np.where(caution, FLAG_CAUTION, ""))
    return pd.Series(flags, index=cv.index, dtype="str")


def _check_columns(frame: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if missing:
        raise KeyError(f"columns not in the survey frame: {', '.join(missing)}")


def _working_frame(
    frame: pd.DataFrame, *, yes: str, asked: str, stratum: str, psu: str, weight: str
) -> pd.DataFrame:
    """The design and the two indicators under working names, checked."""
    for column in (stratum, psu, weight):
        empty = int(frame[column].isna().sum())
        if empty:
            raise ValueError(f"{empty} respondent(s) have no {column}")
    weights = pd.to_numeric(frame[weight], errors="raise").astype(float)
    bad = ~np.isfinite(weights) | (weights <= 0)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} respondent(s) have a {weight} that is not positive")
    asked_flags = _indicator(frame[asked], asked).fillna(False).astype(bool)
    yes_flags = _indicator(frame[yes], yes)
    unanswered = int((asked_flags & yes_flags.isna()).sum())
    if unanswered:
        raise ValueError(f"{unanswered} respondent(s) asked have no value in {yes}")
    yes_flags = yes_flags.fillna(False).astype(bool) & asked_flags
    return pd.DataFrame(
        {
            _STRATUM: frame[stratum].astype(str).to_numpy(),
            _PSU: frame[psu].astype(str).to_numpy(),
            _WEIGHT: weights.to_numpy(),
            _YES: yes_flags.to_numpy().astype(np.int8),
            _ASKED: asked_flags.to_numpy(),
        }
    )


def _indicator(column: pd.Series, name: str) -> pd.Series:
    """A boolean or 0/1 column as nullable booleans; anything else is refused."""
    values = column.astype("Float64")
    if not values.dropna().isin([0.0, 1.0]).all():
        raise ValueError(f"{name} must be boolean or 0/1")
    return values == 1.0


def _domain_ids(frame: pd.DataFrame, domains: list[str]) -> np.ndarray:
    """One integer per combination of domain values, in sorted order; ``_OUTSIDE`` for rows with
    a missing domain value."""
    if not domains:
        return np.zeros(len(frame), dtype=np.int64)
    ids = frame.groupby(domains, sort=True, observed=True, dropna=True).ngroup()
    return ids.fillna(_OUTSIDE).to_numpy(dtype=np.int64)


def _domain_keys(frame: pd.DataFrame, domains: list[str], ids: pd.Series) -> pd.DataFrame:
    """The domain columns' values of each domain id."""
    keys = frame[domains].set_axis(ids.to_numpy(), axis=0)
    keys = keys[~keys.index.duplicated()]
    return keys.drop(index=_OUTSIDE, errors="ignore").sort_index()


def _domain_totals(work: pd.DataFrame) -> pd.DataFrame:
    asked = work[_ASKED].astype(float)
    sums = pd.DataFrame(
        {
            _DOMAIN: work[_DOMAIN],
            "numerator": work[_WEIGHT] * work[_YES],
            "denominator": work[_WEIGHT] * asked,
            "respondents": asked,
        }
    ).groupby(_DOMAIN, sort=True)
    return sums.sum()


def _design_precision(work: pd.DataFrame) -> pd.DataFrame:
    """svy's estimate, standard error, confidence interval and degrees of freedom per domain id.

    Each batch of domains is one ``prop`` call on the whole sample; ``where`` gives the rows not
    asked, and those of the other batches, a zero weight: they stay in the design, exactly like
    the rows of another domain. ``prop`` returns a row per answer level (0 and 1) and domain; a
    level no respondent gave in the whole sample has no rows, so the share of ``yes`` is read from
    the level 1 row, or from the level 0 row mirrored (1 - p, same se, interval mirrored: the
    logit interval is symmetric in p and 1 - p).
    """
    batches = np.where(work[_DOMAIN] == _OUTSIDE, -1, work[_DOMAIN] // DOMAINS_PER_CALL)
    sample = svy.Sample(
        pl.from_pandas(work.assign(**{_BATCH: batches})),
        svy.Design(stratum=_STRATUM, psu=_PSU, wgt=_WEIGHT, singleton=LONELY_PSU_RULE),
    )
    rows = pd.concat(
        sample.estimation.prop(
            _YES,
            by=_DOMAIN,
            where=[svy.col(_ASKED), svy.col(_BATCH) == int(batch)],
            alpha=1 - CONFIDENCE_LEVEL,
        )
        .to_polars()
        .to_pandas()
        for batch in np.unique(batches[work[_ASKED].to_numpy()])
        if batch >= 0
    )
    level = rows[_YES].astype(int)
    said_yes = rows[level == 1].set_index(_DOMAIN)
    said_no = rows[level == 0].set_index(_DOMAIN)
    precision = pd.DataFrame(
        {
            "estimate": 1.0 - said_no["est"],
            "se": said_no["se"],
            "ci_low": 1.0 - said_no["uci"],
            "ci_high": 1.0 - said_no["lci"],
            "df": said_no["df"],
        }
    )
    direct = pd.DataFrame(
        {
            "estimate": said_yes["est"],
            "se": said_yes["se"],
            "ci_low": said_yes["lci"],
            "ci_high": said_yes["uci"],
            "df": said_yes["df"],
        }
    )
    precision = precision.reindex(precision.index.union(direct.index))
    precision.loc[direct.index] = direct
    return precision


def _coefficient_of_variation(estimate: pd.Series, se: pd.Series) -> pd.Series:
    return (se / estimate).where(estimate > _BOUND_TOLERANCE)


def _at_bound(estimate: np.ndarray) -> np.ndarray:
    """Shares of 0 or 1 (up to rounding in the weighted sums)."""
    return (estimate <= _BOUND_TOLERANCE) | (estimate >= 1 - _BOUND_TOLERANCE)
