"""Prefect wiring over `east_tasks`: the only package that imports Prefect."""
