"""Indicators: the catalogue, the engine computing every value at every level and period,
survey precision, reconciliation of sources, reporting completeness and timeliness, and
disclosure control of what is published."""
