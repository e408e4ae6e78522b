"""What flows back: the monthly bulletin and the contributors' packs, open data and SDMX, the
record of what was published, and the origin of every figure."""
