"""Observatory Exchange: municipal citizen-security data into a national warehouse."""
