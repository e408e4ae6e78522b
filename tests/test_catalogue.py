"""The indicator catalogue: every standard indicator checked against figures computed by hand.

One small warehouse, loaded through the drop folders like any file: Panamá (district 0804)
reports homicides, other crimes and a year before; Colón (0301) reports a theft and no homicide
(zero); La Chorrera (1304) sends nothing (missing). Populations come from the reference files.
"""

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from obsx.indicators.catalogue import load_catalogue
from obsx.indicators.engine import compute_indicators, refresh_indicators
from obsx.intake.dropzone import Dropzone, file_sha256, partition_key
from obsx.intake.submission import process_submission
from obsx.publication.lineage import explain
from obsx.sourceyaml import SourceError
from obsx.warehouse import reference
from obsx.warehouse.reference import observatories
from obsx.warehouse.tables import indicator, indicator_value
from tests.conftest import TODAY, load_reference

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
POP = reference.read_population()
HEADER = "id,fecha,distrito,delito,sexo,edad,arma,relacion,movil de genero,victimas"
PANAMA_ROWS = [
    "H1,2025-01-03,0804,0101,M,25,FIREARM,STRANGER,,",
    "H2,2025-01-20,0804,0101,M,19,SHARP,,,",
    "H3,2025-02-11,0804,0101,F,33,FIREARM,pareja,,",  # femicide: intimate partner
    "H4,2025-04-02,0804,0101,F,70,BLUNT,desconocido,sí,",  # femicide: gender-related motive
    "S1,2025-01-25,0804,03011,F,16,NONE,,,",
    "D1,2025-02-01,0804,02011,F,30,NONE,familiar,,",  # domestic violence
    "D2,2025-02-03,0804,02011,M,30,NONE,STRANGER,,",  # an assault, not domestic
    "R1,2025-03-01,0804,0401,M,40,NONE,,,",
    "T1,2025-03-02,0804,0502,F,41,NONE,,,",
    "V1,2025-03-03,0804,050211,M,42,NONE,,,",  # theft of a car: theft and vehicle theft
    "E1,2025-03-04,0804,02051,M,43,NONE,,,",
    "K1,2025-03-05,0804,020221,M,44,NONE,,,",
    "A1,2025-03-06,0804,0102,M,45,FIREARM,,,",
    "B1,2025-03-07,0804,0101,NE,,UNKNOWN,,,15",  # an aggregated row: 15 victims
    "Y1,2024-03-09,0804,0101,NE,,UNKNOWN,,,10",  # a year before: 10 victims
]
COLON_ROWS = ["C1,2025-01-09,0301,0502,F,22,NONE,,,"]


def pop(code, year=2025, sex=None, age=None):
    rows = POP[(POP["geo_code"] == code) & (POP["year"] == year)]
    if sex:
        rows = rows[rows["sex"] == sex]
    if age:
        rows = rows[rows["age_group"] == age]
    return int(rows["population"].sum())


def deliver(zone, engine, observatory, name, lines):
    path = zone.inbox(observatory) / name
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    key = partition_key(observatory, file_sha256(path))
    outcome = process_submission(key, zone, engine, observatories(), TODAY)
    assert outcome.counts["rows_rejected"] == 0, outcome
    return outcome


@pytest.fixture
def warehouse(tmp_path, loaded_engine):
    zone = Dropzone(tmp_path, observatories())
    zone.ensure_folders()
    deliver(zone, loaded_engine, "pa_panama", "incidentes_panama.csv", PANAMA_ROWS)
    deliver(zone, loaded_engine, "pa_colon", "incidentes_colon.csv", COLON_ROWS)
    compute_indicators(loaded_engine, NOW)
    loaded_engine.zone = zone
    return loaded_engine


def row(engine, code, geo, period, disaggregation=""):
    v = indicator_value.c
    with engine.connect() as conn:
        return (
            conn.execute(
                sa.select(indicator_value).where(
                    v.indicator_code == code,
                    v.geo_code == geo,
                    v.period == period,
                    v.disaggregation == disaggregation,
                )
            )
            .mappings()
            .one_or_none()
        )


def rate(engine, code, geo, period, disaggregation=""):
    found = row(engine, code, geo, period, disaggregation)
    return None if found is None else (found["numerator"], found["denominator"], found["value"])


def test_the_catalogue_holds_at_least_twenty_standard_indicators_and_defines_them_all(warehouse):
    codes = {i.code for i in load_catalogue().indicators}
    assert len(codes) >= 20
    with warehouse.connect() as conn:
        computed = set(conn.scalars(sa.select(indicator_value.c.indicator_code).distinct()))
        defined = {r.indicator_code: r for r in conn.execute(sa.select(indicator))}
    assert computed <= codes and set(defined) == codes
    femicide = defined["FEMICIDE_RATE"]
    assert "UN Women" in femicide.standard and femicide.definition_es and femicide.suppress_below


def test_homicide_rate_by_sex_age_group_and_weapon(warehouse):
    victims = 4 + 15  # H1-H4 and the aggregated row
    assert rate(warehouse, "SDG_16_1_1", "0804", "2025") == pytest.approx(
        (victims, pop("0804"), victims * 1e5 / pop("0804"))
    )
    assert rate(warehouse, "SDG_16_1_1", "0804", "2025", "sex=F") == pytest.approx(
        (2, pop("0804", sex="F"), 2e5 / pop("0804", sex="F"))
    )
    assert rate(warehouse, "SDG_16_1_1", "0804", "2025", "age_group=60+") == pytest.approx(
        (1, pop("0804", age="60+"), 1e5 / pop("0804", age="60+"))
    )
    assert rate(warehouse, "SDG_16_1_1", "0804", "2025", "age_group=15-29") == pytest.approx(
        (2, pop("0804", age="15-29"), 2e5 / pop("0804", age="15-29"))
    )
    assert rate(warehouse, "SDG_16_1_1", "0804", "2025", "weapon=FIREARM") == pytest.approx(
        (2, pop("0804"), 2e5 / pop("0804"))
    )
    assert rate(warehouse, "HOMICIDE_COUNT", "0804", "2025", "weapon=UNKNOWN")[0] == 15
    assert rate(warehouse, "FIREARM_HOMICIDE_RATE", "0804", "2025")[0] == 2


def test_shares_of_homicides_by_firearm_and_of_victims_aged_15_to_29(warehouse):
    assert rate(warehouse, "FIREARM_HOMICIDE_SHARE", "0804", "2025") == pytest.approx(
        (2, 19, 100 * 2 / 19)
    )
    # of the four victims of known age (the aggregated row has none), two are 15-29 (25, 19)
    assert rate(warehouse, "HOMICIDE_YOUTH_SHARE", "0804", "2025") == pytest.approx((2, 4, 50))


def test_femicide_rate_counts_partner_family_or_gender_motive_per_100000_women(warehouse):
    women = pop("0804", sex="F")
    assert rate(warehouse, "FEMICIDE_RATE", "0804", "2025") == pytest.approx(
        (2, women, 2e5 / women)
    )
    assert rate(warehouse, "FEMICIDE_RATE", "0804", "2025", "age_group=60+") == pytest.approx(
        (1, pop("0804", sex="F", age="60+"), 1e5 / pop("0804", sex="F", age="60+"))
    )


@pytest.mark.parametrize(
    ("code", "victims"),
    [
        ("SEXUAL_VIOLENCE_RATE", 1),
        ("DOMESTIC_VIOLENCE_RATE", 1),
        ("ROBBERY_RATE", 1),
        ("THEFT_RATE", 2),  # 0502 and 050211
        ("VEHICLE_THEFT_RATE", 1),
        ("EXTORTION_RATE", 1),
        ("KIDNAPPING_RATE", 1),
        ("ATTEMPTED_HOMICIDE_RATE", 1),
    ],
)
def test_crime_rates_per_100000(warehouse, code, victims):
    assert rate(warehouse, code, "0804", "2025") == pytest.approx(
        (victims, pop("0804"), victims * 1e5 / pop("0804"))
    )


def test_a_unit_that_reported_no_event_is_zero_and_one_that_sent_nothing_is_missing(warehouse):
    assert rate(warehouse, "SDG_16_1_1", "0301", "2025") == (0, pop("0301"), 0)
    assert rate(warehouse, "SDG_16_1_1", "0301", "2025", "sex=F") == (0, pop("0301", sex="F"), 0)
    assert rate(warehouse, "HOMICIDE_COUNT", "0301", "2025")[0] == 0
    assert row(warehouse, "SDG_16_1_1", "1304", "2025") is None
    assert row(warehouse, "HOMICIDE_COUNT", "1304", "2025") is None
    # the province of Panamá Oeste (13) reported nothing either: no value, not zero
    assert row(warehouse, "SDG_16_1_1", "13", "2025") is None


def test_months_quarters_and_years(warehouse):
    assert rate(warehouse, "HOMICIDE_COUNT", "0804", "2025-01")[0] == 2
    assert rate(warehouse, "HOMICIDE_COUNT", "0804", "2025-Q1")[0] == 3 + 15
    assert rate(warehouse, "HOMICIDE_COUNT", "0804", "2025-Q2")[0] == 1
    assert rate(warehouse, "HOMICIDE_COUNT", "0804", "2024-Q1")[0] == 10
    assert rate(warehouse, "SDG_16_1_1", "08", "2025-Q1") == pytest.approx(
        (18, pop("0804"), 18e5 / pop("0804"))
    )


def test_change_against_the_previous_period_and_a_year_before(tmp_path, loaded_engine):
    zone = Dropzone(tmp_path, observatories())
    zone.ensure_folders()
    rows = [
        "M1,2024-03-09,0804,0101,NE,,UNKNOWN,,,10",
        "M2,2025-02-09,0804,0101,NE,,UNKNOWN,,,20",
        "M3,2025-03-09,0804,0101,NE,,UNKNOWN,,,15",
    ]
    deliver(zone, loaded_engine, "pa_panama", "agregado.csv", rows)
    compute_indicators(loaded_engine, NOW)

    march = row(loaded_engine, "SDG_16_1_1", "0804", "2025-03")
    assert march["change_previous"] == pytest.approx(100 * (15 - 20) / 20)  # same population
    year_before = 10e5 / pop("0804", year=2024)
    assert march["change_year_ago"] == pytest.approx(
        100 * (march["value"] - year_before) / year_before
    )
    q1 = row(loaded_engine, "HOMICIDE_COUNT", "0804", "2025-Q1")
    # two months of 2025-Q1 reported against one of 2024-Q1: not the same share of the quarter
    assert (
        q1["coverage"],
        row(loaded_engine, "HOMICIDE_COUNT", "0804", "2024-Q1")["coverage"],
    ) == (
        pytest.approx(200 / 3),
        pytest.approx(100 / 3),
    )
    assert q1["change_year_ago"] is None
    assert q1["change_previous"] is None  # 2024-Q4: nothing reported, nothing to compare
    assert row(loaded_engine, "HOMICIDE_COUNT", "0804", "2024-03")["change_year_ago"] is None


def test_no_change_is_published_against_a_withheld_value(warehouse):
    february = row(warehouse, "SDG_16_1_1", "0804", "2025-02")  # one victim
    assert february["conf_status"] == "C"
    assert february["change_previous"] is None
    assert row(warehouse, "SDG_16_1_1", "0804", "2025-03")["change_previous"] is None


def test_small_counts_are_withheld_and_cannot_be_recovered_from_the_margins(warehouse):
    # March in 0804: 15 aggregated victims of unknown sex; the 2 women of 2025 are withheld
    women = row(warehouse, "SDG_16_1_1", "0804", "2025", "sex=F")
    assert women["conf_status"] == "C"
    men = row(warehouse, "SDG_16_1_1", "0804", "2025", "sex=M")
    assert men["conf_status"] == "C"  # 2 men: a small count too


def test_only_the_years_that_changed_are_recomputed(warehouse):
    first = refresh_indicators(warehouse)  # the first refresh computes everything
    assert first["years"] is None
    before = first_stamp = _stamps(warehouse)["2025"]
    deliver(
        warehouse.zone,
        warehouse,
        "pa_panama",
        "correccion_2024.csv",
        ["Y2,2024-06-01,0804,0101,M,50,FIREARM,,,"],
    )
    done = refresh_indicators(warehouse)

    assert done["years"] == ["2024"]
    stamps = _stamps(warehouse)
    assert stamps["2025"] == before == first_stamp  # untouched: same computed_at
    assert stamps["2024"] > before
    assert rate(warehouse, "HOMICIDE_COUNT", "0804", "2024")[0] == 11
    assert refresh_indicators(warehouse)["years"] == []  # nothing changed since


def _stamps(engine) -> dict:
    """Per year, the distinct computed_at of its values (one per refresh that wrote them);
    completeness and timeliness are left out: they move with the calendar at every refresh."""
    v = indicator_value.c
    year = sa.func.substr(v.period, 1, 4)
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(year, v.computed_at)
            .where(
                v.indicator_code.not_in(
                    ["COMPLETENESS", "TIMELINESS", "PLAN_REPORTING_COMPLETENESS"]
                )
            )
            .distinct()
        ).all()
    stamps = {}
    for y, stamp in found:
        assert y not in stamps, f"{y} has values of two refreshes"
        stamps[y] = stamp
    return stamps


def test_explain_lists_the_records_files_and_rows_behind_a_value(warehouse):
    found = explain(warehouse, "SDG_16_1_1", "08", "2025-Q1")

    numerator = found.records[found.records["side"] == "numerator"]
    assert numerator["victim_count"].sum() == found.value["numerator"] == 18
    assert set(numerator["incident_id"]) == {"H1", "H2", "H3", "B1"}
    h3 = numerator.set_index("incident_id").loc["H3"]
    assert (h3["file_name"], h3["source_row"], h3["revision"]) == ("incidentes_panama.csv", 4, 1)
    assert set(found.population["geo_code"]) == {"0804"}
    assert found.population["population"].sum() == pop("0804")


def test_a_catalogue_mistake_names_its_line(tmp_path):
    text = Path(load_catalogue().path).read_text(encoding="utf-8")
    broken = tmp_path / "catalogue.yaml"
    broken.write_text(text.replace("weapon: [FIREARM]}", "arma: [FIREARM]}", 1), encoding="utf-8")
    with pytest.raises(SourceError, match=r"catalogue.yaml:\d+: incidents has no field"):
        load_catalogue(broken)
    broken.write_text(text.replace('prefix: ["0102"]', 'prefix: ["9999"]'), encoding="utf-8")
    with pytest.raises(SourceError, match="'9999' is not a code of incidents"):
        load_catalogue(broken)


def test_a_new_indicator_is_a_catalogue_entry(tmp_path, warehouse, monkeypatch):
    text = Path(load_catalogue().path).read_text(encoding="utf-8")
    entry = """
  - code: WOMEN_ASSAULTED_COUNT
    name: {es: Mujeres agredidas, en: Women assaulted}
    definition: {es: Víctimas mujeres de agresión (ICCS 0201)., en: Women victims of assault (ICCS 0201).}
    standard: UNODC ICCS 0201
    kind: count
    numerator: {dataset: incidents, measure: victims, where: {crime_code: {prefix: ["0201"]}, victim_sex: [F]}}
    unit: victims
    periods: [year]
"""
    extended = tmp_path / "catalogue.yaml"
    extended.write_text(text + entry, encoding="utf-8")
    import obsx.indicators.engine

    monkeypatch.setattr(obsx.indicators.engine, "catalogue", lambda: load_catalogue(extended))
    compute_indicators(warehouse, NOW)
    assert rate(warehouse, "WOMEN_ASSAULTED_COUNT", "0804", "2025")[0] == 1


def test_completeness_and_timeliness_follow_when_files_arrived(warehouse):
    from obsx.indicators.engine import refresh_reporting_values

    with warehouse.begin() as conn:  # Panamá's file came on 5 Feb 2025, Colón's on 15 Feb
        for name, day in (("incidentes_panama.csv", 5), ("incidentes_colon.csv", 15)):
            conn.execute(
                sa.text("UPDATE submission SET received_at = :at WHERE file_name = :name"),
                {"at": dt.datetime(2025, 2, day, 12, tzinfo=dt.UTC), "name": name},
            )
        status = refresh_reporting_values(conn, dt.datetime(2025, 6, 20, tzinfo=dt.UTC))

    panama = status[
        (status["observatory_code"] == "pa_panama") & (status["dataset"] == "incidents")
    ]
    # owed from January 2025 (the calendar's start) to June; June and May are not due yet
    assert dict(zip(panama["period"], panama["status"], strict=True)) == {
        "2025-01": "on_time",  # due 10 February
        "2025-02": "on_time",
        "2025-03": "on_time",
        "2025-04": "on_time",
        "2025-05": "missing",  # due 10 June: passed, nothing of May
        "2025-06": "not_due",  # due 10 July
    }
    colon = status[(status["observatory_code"] == "pa_colon") & (status["dataset"] == "incidents")]
    assert colon.set_index("period")["status"].to_dict()["2025-01"] == "late"  # after 10 Feb
    assert rate(warehouse, "COMPLETENESS", "0804", "2025") == pytest.approx((4, 5, 80))
    assert rate(warehouse, "TIMELINESS", "0301", "2025") == pytest.approx((0, 5, 0))
    assert rate(warehouse, "COMPLETENESS", "0301", "2025") == pytest.approx((1, 5, 20))
    # the nation: five observatories, five months due each; Panamá 4 and Colón 1 received
    assert rate(warehouse, "COMPLETENESS", "PA", "2025") == pytest.approx((5, 25, 20))
    assert rate(warehouse, "TIMELINESS", "PA", "2025") == pytest.approx((4, 25, 16))
    assert rate(warehouse, "COMPLETENESS", "0804", "2025-05") == (0, 1, 0)


@pytest.mark.parametrize(("lang", "name"), [("es", "indicators.md"), ("en", "indicators.en.md")])
def test_committed_catalogue_docs_are_up_to_date(lang, name):
    from obsx.indicators.catalogue import catalogue_markdown

    committed = (Path(__file__).parent.parent / "docs" / name).read_text(encoding="utf-8")
    assert committed == catalogue_markdown(load_catalogue(), lang), "run: obsx catalogue-docs"


def test_authorised_users_read_the_same_lineage_in_sql(warehouse):
    with warehouse.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT file_name, source_row, revision FROM record_lineage_incidents"
                " WHERE observatory_code = 'pa_panama' AND incident_id = 'H3'"
            )
        ).one()
    assert tuple(row) == ("incidentes_panama.csv", 4, 1)


# --- A deployment's own indicators (deployment.yaml key ``indicators``) ----------------------

OWN_INDICATORS = """\
# Panama's own: a figure the ministry publishes, one it does not, one it names its way
switch_off: [KIDNAPPING_RATE]
rename:
  ROBBERY_RATE:
    es: "Robos denunciados por 100.000 habitantes"
    en: "Reported robberies per 100,000 population"
indicators:
  - code: PA_FIREARM_VICTIMS
    name: {es: "Víctimas de armas de fuego", en: "Victims of firearms"}
    definition:
      es: "Víctimas de cualquier delito cometido con arma de fuego."
      en: "Victims of any crime committed with a firearm."
    kind: count
    numerator: {dataset: incidents, measure: victims, where: {weapon: [FIREARM]}}
    unit: victims
    suppress_below: 5
"""


def own_deployment(tmp_path, monkeypatch, text: str, more: str = "") -> Path:
    """A copy of the Panama deployment with ``indicators.yaml`` holding ``text`` (and ``more``
    keys in ``deployment.yaml``)."""
    import shutil

    from obsx.warehouse.deployment import DEPLOYMENTS_DIR

    folder = tmp_path / "pa_own"
    shutil.copytree(DEPLOYMENTS_DIR / "pa", folder, ignore=shutil.ignore_patterns("demo"))
    spec = folder / "deployment.yaml"
    spec.write_text(spec.read_text(encoding="utf-8") + "indicators: indicators.yaml\n" + more)
    (folder / "indicators.yaml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("OBSX_DEPLOYMENT", str(folder))
    return folder / "indicators.yaml"


def panama_refreshed(tmp_path, engine):
    """The warehouse after Panamá's rows, its indicators computed."""
    warehouse = load_reference(engine)
    zone = Dropzone(tmp_path / "data", observatories())
    zone.ensure_folders()
    deliver(zone, warehouse, "pa_panama", "incidentes_panama.csv", PANAMA_ROWS)
    compute_indicators(warehouse, NOW)
    return warehouse


def test_a_deployment_adds_switches_off_and_renames_indicators(tmp_path, monkeypatch, engine):
    own_deployment(tmp_path, monkeypatch, OWN_INDICATORS)
    cat = load_catalogue()
    codes = [i.code for i in cat.indicators]
    assert "KIDNAPPING_RATE" not in codes and codes[-1] == "PA_FIREARM_VICTIMS"
    assert cat.indicator("ROBBERY_RATE").name_es == "Robos denunciados por 100.000 habitantes"
    assert load_catalogue(overlay=None).indicator("KIDNAPPING_RATE")  # the project's, whole

    warehouse = panama_refreshed(tmp_path, engine)
    own = row(warehouse, "PA_FIREARM_VICTIMS", "0804", "2025")
    assert (own["numerator"], own["conf_status"]) == (3, "C")  # H1, H3, A1: a small count
    assert row(warehouse, "KIDNAPPING_RATE", "0804", "2025") is None
    with warehouse.connect() as conn:
        names = dict(conn.execute(sa.select(indicator.c.indicator_code, indicator.c.name_es)).all())
    assert names["ROBBERY_RATE"] == "Robos denunciados por 100.000 habitantes"
    assert "KIDNAPPING_RATE" not in names


@pytest.mark.parametrize(
    "text, where, message",
    [
        ("switch_off: [NOPE]\n", 1, "switch_off: no indicator 'NOPE'"),
        ("rename:\n  NOPE: {es: a, en: b}\n", 2, "rename: no indicator 'NOPE'"),
        ("publish: []\n", 1, "unknown key 'publish'"),
        ("rename:\n  THEFT_RATE: {es: Hurtos}\n", 2, "THEFT_RATE: give es and en"),
        (OWN_INDICATORS.replace("PA_FIREARM_VICTIMS", "ROBBERY_RATE"), 8, "defined twice"),
        (OWN_INDICATORS.replace("weapon: [FIREARM]", "weapon: [LASER]"), 8, "LASER"),
    ],
)
def test_a_deployment_indicators_file_is_checked_with_its_lines(
    tmp_path, monkeypatch, text, where, message
):
    path = own_deployment(tmp_path, monkeypatch, text)
    with pytest.raises(SourceError, match=rf"{path.name}:{where}: .*{message}"):
        load_catalogue()


def test_a_deployment_sets_the_threshold_of_its_statistical_law(tmp_path, monkeypatch, engine):
    """``disclosure.threshold`` replaces every catalogue threshold: with 3, the three firearm
    victims of Panamá 2025 (a small count under the catalogue's 5) are published."""
    own_deployment(tmp_path, monkeypatch, OWN_INDICATORS, "disclosure:\n  threshold: 3\n")
    cat = load_catalogue()
    assert {i.suppress_below for i in cat.indicators if i.suppress_below} == {3}
    assert load_catalogue(overlay=None).indicator("ROBBERY_RATE").suppress_below == 5

    warehouse = panama_refreshed(tmp_path, engine)
    own = row(warehouse, "PA_FIREARM_VICTIMS", "0804", "2025")
    assert (own["numerator"], own["conf_status"]) == (3, "F")
    with warehouse.connect() as conn:
        law = conn.scalar(
            sa.select(indicator.c.suppress_below).where(indicator.c.indicator_code == "SDG_16_1_1")
        )
    assert law == 3  # what the analysts' SQL and the docs read


@pytest.mark.parametrize(
    "policy, message",
    [
        ("  threshold: 1\n", "disclosure.threshold: a whole number, 2 or more"),
        ("  protection_width: 0\n", "disclosure.protection_width: a whole number, 1 or more"),
        ("  k_anonymity: 3\n", "unknown key 'k_anonymity'; known: headlines, monthly_dim"),
        ("  headlines: SDG_16_1_1\n", "disclosure.headlines: a list of codes"),
        ("  monthly_dimensions: {sex: true}\n", "disclosure.monthly_dimensions: a list of"),
    ],
)
def test_a_deployment_disclosure_policy_is_checked_with_its_line(
    tmp_path, monkeypatch, policy, message
):
    from obsx.warehouse.deployment import current_deployment

    own_deployment(tmp_path, monkeypatch, "", "disclosure:\n" + policy)
    with pytest.raises(SourceError, match=rf"deployment.yaml:\d+: .*{message}"):
        current_deployment()


@pytest.mark.parametrize(
    "policy, message",
    [
        ("  headlines: [SDG_16_1_1, NOPE]\n", "disclosure.headlines: unknown NOPE"),
        ("  monthly_dimensions: [sex, colour]\n", "disclosure.monthly_dimensions: unknown colour"),
    ],
)
def test_a_deployment_disclosure_policy_names_what_the_catalogue_has(
    tmp_path, monkeypatch, policy, message
):
    own_deployment(tmp_path, monkeypatch, "", "disclosure:\n" + policy)
    with pytest.raises(SourceError, match=rf"deployment.yaml:\d+: {message}"):
        load_catalogue()


def test_a_deployment_chooses_its_headlines_and_what_it_publishes_by_month(
    tmp_path, monkeypatch, engine
):
    """Issue 20, item 5: a statistical law that publishes months by sex (the catalogue splits
    crimes by quarter and year only; prevention monthly by activity and contract: now not), and
    leads with the homicide rate and count alone. The independent attacker still finds nothing."""
    from tests.attacker import withstands

    policy = "disclosure:\n  headlines: [SDG_16_1_1, HOMICIDE_COUNT]\n  monthly_dimensions: [sex]\n"
    own_deployment(tmp_path, monkeypatch, "", policy)
    cat = load_catalogue()
    assert [i.code for i in cat.indicators if i.headline] == ["SDG_16_1_1", "HOMICIDE_COUNT"]
    sdg = cat.indicator("SDG_16_1_1")
    assert sdg.dimensions_in("month") == ("sex",)
    assert set(sdg.dimensions_in("quarter")) == set(sdg.disaggregations) > {"sex"}
    assert cat.indicator("PLAN_EXECUTION").dimensions_in("month") == ()
    assert load_catalogue(overlay=None).indicator("SDG_16_1_1").dimensions_in("month") == ()

    warehouse = panama_refreshed(tmp_path, engine)
    v = indicator_value.c
    with warehouse.connect() as conn:
        split = dict(
            conn.execute(
                sa.select(v.period_type, sa.func.count(sa.distinct(v.disaggregation)))
                .where(v.indicator_code == "SDG_16_1_1", v.disaggregation != "")
                .group_by(v.period_type)
            ).all()
        )
        by_month = set(
            conn.scalars(
                sa.select(v.disaggregation)
                .where(v.period_type == "month", v.disaggregation != "")
                .distinct()
            )
        )
    assert {d.split("=")[0] for d in by_month} == {"sex"}
    assert split["quarter"] == split["year"] > split["month"] > 0
    assert row(warehouse, "SDG_16_1_1", "PA", "2025")["conf_status"] == "F"
    found = withstands(warehouse, Path(__file__).parents[1] / "indicators" / "catalogue.yaml")
    assert (found["pinned"], found["narrow"], found["published"]) == ([], [], [])


def test_a_file_of_provinces_loads_at_province_level_in_panama(tmp_path, monkeypatch, engine):
    """Issue 21's case: a national count by province names (Panamá, Colón, Bocas del Toro and
    Los Santos are districts' names too) read with ``level: province`` counts for the provinces
    and the country, and for no district."""
    profile = own_deployment(tmp_path, monkeypatch, "").parent / "profiles" / "pa_imelcf"
    (profile / "provincias.yaml").write_text(
        "dataset: incidents\n"
        'files: ["homicidios_provincia*"]\n'
        "level: provincia\n"
        "columns: {Víctimas: victim_count}\n"
        "derive:\n"
        "  incident_id: {join: [Año, Mes, Provincia]}\n"
        "  occurred_on: {year: Año, month: Mes, day: 1}\n"
        '  crime_code: {value: "0101"}\n'
        "  district_code: {place: Provincia}\n",
        encoding="utf-8",
    )
    counts = {"Panamá": 22, "Colón": 9, "Bocas del Toro": 3, "Los Santos": 1, "Chiriquí": 6}
    warehouse = load_reference(engine)
    zone = Dropzone(tmp_path / "data", observatories())
    zone.ensure_folders()
    path = zone.inbox("pa_imelcf") / "homicidios_provincia_2025_12.csv"
    path.write_text(
        "Provincia,Año,Mes,Víctimas\n"
        + "".join(f"{name},2025,12,{n}\n" for name, n in counts.items()),
        encoding="utf-8",
    )
    key = partition_key("pa_imelcf", file_sha256(path))
    outcome = process_submission(key, zone, warehouse, observatories(), TODAY)
    assert (outcome.status, outcome.counts["rows_inserted"]) == ("accepted", 5)
    compute_indicators(warehouse, NOW)
    v = indicator_value.c
    with warehouse.connect() as conn:
        found = dict(
            conn.execute(
                sa.select(v.geo_code, v.numerator).where(
                    v.indicator_code == "HOMICIDE_COUNT",
                    v.period == "2025-12",
                    v.disaggregation == "",
                )
            ).all()
        )
    assert found == {"PA": 41, "08": 22, "03": 9, "01": 3, "07": 1, "04": 6}
