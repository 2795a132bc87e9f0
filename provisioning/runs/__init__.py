"""Provisioning runs: their tables, API shapes, SQL, rules, routes and commands."""
