"""The national warehouse: its tables and migrations, the reference data (geography,
population, contributors), the deployment's declarations, corrections of closed periods, and who
may read and do what."""
