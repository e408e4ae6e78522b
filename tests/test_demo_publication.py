"""The demo warehouse, published: nothing withheld can be recovered, values trace to their rows.

The demo's 27 files go through the drop folders into a SQLite warehouse once for the module;
then an attacker who sees only the analysts' view (withheld cells are NULL) and knows how the
tables add up — areas over their parts, totals over sex, age group and weapon, years over
quarters over months, the same count in two indicators — tries to solve for every withheld
cell. The attacker is written here, independently of obsx.indicators.suppression: it derives the margins
from the published table itself and solves them by linear algebra (a cell is recovered when
every solution of the system gives it the same value).
"""

import datetime as dt
import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import sqlalchemy as sa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from obsx.indicators.engine import compute_indicators
from obsx.publication.lineage import explain
from obsx.warehouse.deployment import current_deployment
from tests.attacker import withstands
from tests.conftest import process_inboxes, sqlite_warehouse

CATALOGUE = Path(__file__).parents[1] / "indicators" / "catalogue.yaml"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    engine = sqlite_warehouse(root)  # SQLite: the audit, not the server
    current_deployment().demo().seed_demo(root)
    process_inboxes(root, engine)
    compute_indicators(engine)
    return engine


def _published_and_true(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        true = pd.read_sql(
            sa.text(
                "SELECT v.*, i.numerator AS num_text, i.denominator AS den_text, i.kind,"
                " i.suppress_below FROM indicator_value v"
                " JOIN indicator i ON i.indicator_code = v.indicator_code"
                " WHERE i.suppress_below IS NOT NULL"
            ),
            conn,
        )
        published = pd.read_sql(sa.text("SELECT * FROM analytics_indicator_value"), conn)
        parents = dict(
            conn.execute(
                sa.text("SELECT geo_code, parent_code FROM geography WHERE parent_code IS NOT NULL")
            ).all()
        )
    key = ["indicator_code", "geo_level", "geo_code", "period_type", "period", "disaggregation"]
    both = true.merge(
        published[[*key, "numerator", "denominator", "value"]], on=key, suffixes=("", "_pub")
    )
    both["parent"] = both["geo_code"].map(parents)
    return both


def _cells(both: pd.DataFrame) -> pd.DataFrame:
    """One cell per count an attacker can name: a numerator (and a share's denominator),
    identified by what it counts (the indicator's definition text and disaggregation), so the
    same count published by two indicators is one unknown."""
    num = both.assign(what=both["num_text"], count=both["numerator"], shown=both["numerator_pub"])
    den = both[both["kind"] == "ratio"]
    den = den.assign(what=den["den_text"], count=den["denominator"], shown=den["denominator_pub"])
    cells = pd.concat([num, den], ignore_index=True)
    place = ["what", "disaggregation", "geo_level", "geo_code", "period_type", "period"]
    # withheld in one place, published in another: the attacker reads it where it is published
    cells = cells.groupby(place, as_index=False).agg(
        count=("count", "first"), shown=("shown", "max"), parent=("parent", "first")
    )
    return cells.reset_index(drop=True)


def _margins(cells: pd.DataFrame) -> list[tuple[int, list[int]]]:
    """The sums a reader sees in the tables, kept where they hold in the published design."""
    index = {
        (r.what, r.disaggregation, r.geo_code, r.period_type, r.period): i
        for i, r in enumerate(cells.itertuples())
    }
    groups = defaultdict(list)
    for i, r in enumerate(cells.itertuples()):
        if r.parent is not None and isinstance(r.parent, str):  # area over its parts
            groups[("geo", r.what, r.disaggregation, r.parent, r.period_type, r.period)].append(i)
        if r.disaggregation:  # total over a dimension's values
            dim = r.disaggregation.split("=")[0]
            groups[("dim", r.what, dim, r.geo_code, r.period_type, r.period)].append(i)
        if r.period_type == "month":
            q = f"{r.period[:4]}-Q{(int(r.period[5:7]) + 2) // 3}"
            groups[("per", r.what, r.disaggregation, r.geo_code, "quarter", q)].append(i)
        if r.period_type == "quarter":
            groups[("per", r.what, r.disaggregation, r.geo_code, "year", r.period[:4])].append(i)
    relations = []
    for (kind, what, a, b, c, d), parts in groups.items():
        if kind == "geo":
            total = index.get((what, a, b, c, d))
        elif kind == "dim":
            total = index.get((what, "", b, c, d))
        else:
            total = index.get((what, a, b, c, d))
        if total is None:
            continue
        counts = cells["count"].to_numpy()
        if abs(counts[total] - counts[parts].sum()) < 1e-9:
            relations.append((total, parts))
    return relations


def _recoverable(cells: pd.DataFrame, relations) -> list[int]:
    """Withheld cells whose value every solution of the margins agrees on."""
    counts = cells["count"].to_numpy(dtype=float)
    unknown = cells["shown"].isna().to_numpy() & (counts == counts)  # withheld
    rows, cols, vals = [], [], []
    for r, (total, parts) in enumerate(relations):
        for cell, coef in [(total, 1.0), *((p, -1.0) for p in parts)]:
            if unknown[cell]:
                rows.append(r)
                cols.append(cell)
                vals.append(coef)
    if not cols:
        return []
    n = len(counts)
    a = coo_matrix((vals, (rows, cols)), shape=(len(relations), n)).tocsr()
    link = (a.T @ a).tocoo()
    _, label = connected_components(link, directed=False)
    found = []
    for component in np.unique(label[np.flatnonzero(unknown)]):
        members = np.flatnonzero((label == component) & unknown)
        sub = a[:, members]
        used = np.unique(sub.nonzero()[0])
        if len(used) == 0:
            continue
        null = scipy.linalg.null_space(sub[used].toarray())
        determined = np.abs(null).max(axis=1) < 1e-8 if null.size else np.ones(len(members), bool)
        found += members[determined].tolist()
    return found


def test_no_withheld_cell_of_the_demo_can_be_recovered_from_the_published_margins(demo):
    both = _published_and_true(demo)
    cells = _cells(both)
    relations = _margins(cells)
    withheld = cells["shown"].isna()

    assert withheld.sum() > 100 and len(relations) > 1000  # the audit has work to do
    primary = both[both["conf_status"] == "C"]
    assert (primary["numerator"].clip(lower=0) < primary["suppress_below"]).any()
    assert _recoverable(cells, relations) == []


def test_the_attacker_finds_what_primary_suppression_alone_leaves_open(demo):
    """The same attacker against the primary rule alone (withhold 1-4, publish the rest)
    recovers cells: the audit is not vacuous."""
    cells = _cells(_published_and_true(demo))
    small = (cells["count"] > 0) & (cells["count"] < 5)
    naive = cells.assign(shown=cells["count"].where(~small))
    withheld = naive["shown"].isna().to_numpy()
    alone = [  # a margin with a single withheld cell gives it away by subtraction
        (total, parts) for total, parts in _margins(naive) if withheld[[total, *parts]].sum() == 1
    ]
    assert len(alone) > 10


def test_an_lp_intruder_narrows_no_small_count_of_the_demo_and_pins_no_withheld_cell(demo):
    # tests/attacker.py: bounds, subsets, categories; before interval protection it pinned 100
    # withheld cells of this table and left 617 of 658 small counts narrower than 0..5
    found = withstands(demo, CATALOGUE)
    assert (found["pinned"], found["narrow"], found["published"]) == ([], [], [])
    assert found["small"] > 600 and found["withheld"] > found["small"]


def test_the_demo_publishes_its_headline_figures(demo):
    with demo.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT indicator_code, geo_level, geo_code, numerator, conf_status"
                " FROM analytics_indicator_value WHERE period = '2025' AND disaggregation = ''"
                " AND (geo_level = 'national' OR indicator_code = 'HOMICIDE_COUNT')"
            )
        ).all()
    published = {(r[0], r[2]): r[3] for r in rows if r[4] == "F"}
    for code in ("SDG_16_1_1", "HOMICIDE_COUNT", "FIREARM_HOMICIDE_SHARE", "ROBBERY_RATE"):
        assert (code, "PA") in published, code
    assert published[("HOMICIDE_COUNT", "PA")] == 414
    provinces = [r for r in rows if r[0] == "HOMICIDE_COUNT" and r[1] == "province"]
    assert provinces and all(r[4] == "F" for r in provinces)
    assert sum(r[3] for r in provinces) == 414


def test_a_figure_a_bulletin_printed_is_withdrawn_only_when_it_must_be(demo, tmp_path):
    """Readers hold what a bulletin printed: a refresh keeps it published where other cells
    protect the small counts instead, and the table as of before that bulletin is reproduced."""
    import shutil

    from obsx.indicators.engine import indicator_values_as_of
    from obsx.warehouse.tables import get_engine

    shutil.copy(demo.url.database, tmp_path / "warehouse.db")
    engine = get_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    key = ["indicator_code", "geo_level", "geo_code", "period_type", "period", "disaggregation"]
    query = sa.text(
        "SELECT * FROM indicator_value WHERE conf_status = 'D' AND disaggregation = ''"
        " AND geo_level = 'district' AND period_type = 'month'"
        " AND indicator_code = 'HOMICIDE_COUNT' ORDER BY geo_code, period"
    )
    printed_at = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        secondary = pd.read_sql(query, conn)  # withheld only to protect small counts
        assert len(secondary) > 10
        # as if last month's bulletin had printed them (a file since then changed the table)
        bulletin = conn.execute(
            sa.text(
                "INSERT INTO publication (kind, period, lang, path, built_at)"
                " VALUES ('bulletin', '2025-11', 'es', 'boletin.html', :t)"
                " RETURNING publication_id"
            ),
            {"t": printed_at},
        ).scalar()
        figures = secondary[[*key, "value"]].assign(publication_id=bulletin, conf_status="F")
        figures.to_sql("publication_figure", conn, if_exists="append", index=False)
    compute_indicators(engine, years=["2025"])

    with engine.connect() as conn:
        now = pd.read_sql(sa.text("SELECT * FROM indicator_value"), conn)
    kept = secondary[key].merge(now, on=key)
    assert len(kept) == len(secondary)
    assert (kept["conf_status"] == "F").sum() >= 1  # published again, something else withheld
    found = withstands(engine, CATALOGUE)
    assert (found["pinned"], found["narrow"], found["published"]) == ([], [], [])
    # as of before that bulletin the table is the one published then, flags and all
    before = indicator_values_as_of(engine, printed_at - dt.timedelta(microseconds=1))
    then = secondary[key].merge(before, on=key)
    assert (then["conf_status"] == "D").all()


def test_an_analyst_reads_in_the_desk_which_files_make_the_national_homicide_count(demo):
    """The desk's origin page on the real demo: the files behind the 414 homicide victims of
    2025, and not how many each gave: a file is one observatory's quarter, and those counts are
    withheld cells (Arraiján's quarters of 2025 are D, La Chorrera's third quarter is C)."""
    import re

    import httpx

    from obsx.warehouse import accounts
    from tests.webserver import PASSWORD, start_server, stop_server

    accounts.add_user(demo, "analista_demo", "analyst", PASSWORD)
    server, url = start_server(Path(demo.url.database).parent)
    try:
        client = httpx.Client(base_url=url, timeout=300)
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
        client.post(
            "/login", data={"csrf": token, "username": "analista_demo", "password": PASSWORD}
        )
        figures = client.get(
            "/desk/figures", params={"indicator": "HOMICIDE_COUNT", "period": "2025"}
        )
        link = re.search(r'href="(/desk/figures/explain\?[^"]*geo=PA[^"]*)"', figures.text)
        page = client.get(link.group(1).replace("&amp;", "&"))
    finally:
        stop_server(server)
    assert page.status_code == 200 and ">414<" in page.text  # the figure itself
    files = re.search(r'<table id="files">.*?</table>', page.text, re.S).group(0)
    rows = re.findall(r"<tr><td>.*?</tr>", files, re.S)
    assert len(rows) >= 8 and "incidentes_2025_T1.csv" in files  # each observatory's quarters
    assert 'class="num' not in files  # no count per file
    with demo.connect() as conn:
        quarters = (
            conn.execute(
                sa.text(
                    "SELECT numerator FROM indicator_value WHERE indicator_code = 'HOMICIDE_COUNT'"
                    " AND disaggregation = '' AND geo_level = 'district' AND period_type = 'quarter'"
                    " AND period LIKE '2025-Q%' AND conf_status <> 'F'"
                )
            )
            .scalars()
            .all()
        )
    assert quarters  # withheld district quarters exist: the page must not give them away
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", files)
    assert not any(c.strip().isdigit() for c in cells)
    assert not re.search(r"\b[A-Z]{2,}-\d{3,}\b", files)  # no incident code


def test_what_no_demo_source_records_is_not_available_never_zero(demo, tmp_path):
    """No demo file has a relationship or gender-motive column: femicide and domestic violence
    are not available at every level and period, in the warehouse, the analysts' view and the
    open data; every other value says how much of its area it covers."""
    from obsx.publication.opendata import write_open_data

    with demo.connect() as conn:
        supplied = set().union(
            *(
                json.loads(s)
                for s in conn.execute(sa.text("SELECT supplied FROM submission_scope")).scalars()
            )
        )
        rows = pd.read_sql(
            sa.text(
                "SELECT indicator_code, geo_level, period, disaggregation, numerator, value,"
                " quality_flag, coverage, conf_status FROM analytics_indicator_value"
            ),
            conn,
        )
    assert not supplied & {"relationship", "gender_motive"}  # the premise, from the files
    for code in ("FEMICIDE_RATE", "DOMESTIC_VIOLENCE_RATE"):
        cells = rows[rows["indicator_code"] == code]
        assert len(cells) > 100 and set(cells["quality_flag"]) == {"not_available"}, code
        assert cells["value"].isna().all() and cells["numerator"].isna().all()
    # the national figures of the homicide register cover the five districts that report
    sdg = rows[
        (rows["indicator_code"] == "SDG_16_1_1")
        & (rows["geo_level"] == "national")
        & (rows["period"] == "2025")
        & (rows["disaggregation"] == "")
    ].iloc[0]
    coverage = rows[
        (rows["indicator_code"] == "REPORTING_COVERAGE")
        & (rows["geo_level"] == "national")
        & (rows["period"] == "2025")
    ].iloc[0]
    assert sdg["coverage"] == pytest.approx(coverage["value"]) == pytest.approx(53.0, abs=0.05)
    files = write_open_data(demo, tmp_path)
    table = pd.read_csv(files["csv"], encoding="utf-8-sig")
    femicide = table[table["indicator_code"] == "FEMICIDE_RATE"]
    assert len(femicide) and femicide["value"].isna().all()
    assert set(femicide["quality_flag"]) == {"not_available"}
    assert "coverage" in table.columns
    # SDMX: the five districts are not the country (M49 591), and say how much of it they are
    sdmx = pd.read_csv(files["sdmx"], dtype=str, keep_default_na=False)
    national = sdmx[(sdmx["SERIES"] == "VC_IHR_PSRC") & (sdmx["TIME_PERIOD"] == "2025")]
    national = national[national["REF_AREA"].isin(["591", "PA_REPORTING"])]
    assert set(national["REF_AREA"]) == {"PA_REPORTING"}
    assert (national["COMMENT_OBS"].str.contains(r"coverage \d+\.\d% of population-months")).all()
    assert "coverage 53.0% of population-months" in set(national["COMMENT_OBS"])


def test_obsx_indicators_prints_what_is_published_unless_asked_for_more(demo, monkeypatch, capsys):
    from obsx.cli import main

    monkeypatch.setenv("WAREHOUSE_URL", str(demo.url))
    main(["indicators", "--indicator", "HOMICIDE_COUNT", "--period", "2025-12"])
    published = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"geo_code": str})
    main(["indicators", "--indicator", "HOMICIDE_COUNT", "--period", "2025-12", "--unsuppressed"])
    computed = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"geo_code": str})

    withheld = published["conf_status"] != "F"
    assert withheld.any() and set(published["conf_status"]) == {"F", "C"}
    assert published.loc[withheld, ["numerator", "value"]].isna().all().all()
    assert set(computed["conf_status"]) == {"F", "C", "D"}
    assert computed["numerator"].notna().all()


def test_explain_traces_a_demo_value_to_its_files_and_rows(demo):
    found = explain(demo, "SDG_16_1_1", "PA", "2025")
    numerator = found.records[found.records["side"] == "numerator"]
    assert numerator["victim_count"].sum() == found.value["numerator"] > 300
    assert numerator["file_name"].str.startswith("incidentes_2025_T").all()
    assert numerator["source_row"].notna().all()
    assert found.population["geo_code"].nunique() == 5  # the five reporting districts


def test_survey_values_carry_their_precision(demo):
    with demo.connect() as conn:
        v = pd.read_sql(
            sa.text(
                "SELECT * FROM indicator_value WHERE indicator_code = 'VICTIMIZATION_PREVALENCE'"
                " AND geo_level = 'national' AND period = '2025'"
            ),
            conn,
        ).set_index("disaggregation")
    total = v.loc[""]
    assert 0 < total["standard_error"] < total["value"]
    assert total["ci_low"] < total["value"] < total["ci_high"]
    assert total["cv"] == pytest.approx(total["standard_error"] / total["value"])
    assert total["quality_flag"] in ("", "caution", "unreliable")
