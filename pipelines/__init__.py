"""Dagster wiring: definitions, resources, jobs, sensors and schedules."""
