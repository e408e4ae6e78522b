"""A snapshot of the asset graph, so that an accidental change to it shows in review."""

from pipelines.definitions import defs


def test_asset_graph_keys_groups_and_dependencies():
    graph = defs.resolve_asset_graph()
    snapshot = {
        key.to_user_string(): (
            graph.get(key).group_name,
            sorted(p.to_user_string() for p in graph.get(key).parent_keys),
        )
        for key in graph.get_all_asset_keys()
    }
    assert snapshot == {
        "reference_geography": ("reference", []),
        "reference_population": ("reference", ["reference_geography"]),
        "reference_observatories": ("reference", ["reference_geography"]),
        "reference_contracts": ("reference", ["reference_geography"]),
        "submissions": ("submissions", ["reference_observatories"]),
        # what arrived in the last 24 h: rebuilt by every batch (it depends on submissions)
        "last_night": ("submissions", ["submissions"]),
        "indicator_value": (
            "indicators",
            ["reference_contracts", "reference_geography", "reference_population", "submissions"],
        ),
        "monthly_bulletin": ("publication", ["indicator_value"]),
        "source_reconciliation": ("indicators", ["indicator_value"]),
    }
    # A batch of files refreshes the indicators, never the bulletin (built monthly, on the 5th).
    job = defs.resolve_job_def("process_submissions")
    assert "monthly_bulletin" not in {
        k.to_user_string() for k in job.asset_layer.executable_asset_keys
    }


def test_asset_checks():
    checks = {
        (k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys
    }
    assert checks == {
        ("submissions", "accepted_rows_held_in_warehouse"),
        ("submissions", "contract_expectations"),
        ("submissions", "volume_in_line_with_history"),
        ("indicator_value", "numerators_add_up"),
        ("indicator_value", "records_placed_in_geography"),
        ("indicator_value", "reporting_units_have_population"),
        ("reference_geography", "reference_file_valid"),
        ("reference_population", "reference_file_valid"),
        ("reference_observatories", "reference_file_valid"),
        ("reference_contracts", "reference_file_valid"),
    }


def test_jobs_sensor_and_nightly_schedule():
    jobs = {
        name: sorted(
            k.to_user_string() for k in defs.resolve_job_def(name).asset_layer.selected_asset_keys
        )
        for name in ("process_submissions", "nightly_refresh", "load_reference")
    }
    reference = [
        "reference_contracts",
        "reference_geography",
        "reference_observatories",
        "reference_population",
    ]
    assert jobs == {
        "process_submissions": sorted(
            [*reference, "submissions", "last_night", "indicator_value", "source_reconciliation"]
        ),
        "nightly_refresh": sorted([*reference, "indicator_value"]),
        "load_reference": reference,
    }
    schedule = defs.resolve_schedule_def("nightly_refresh_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 * * *", "America/Panama")
    assert defs.resolve_sensor_def("incident_inbox_sensor").job_name == "process_submissions"
