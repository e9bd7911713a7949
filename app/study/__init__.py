"""The search: one row's protocol, its grid and stages, the Ray engine, the recipe fingerprint, findings and the report."""
