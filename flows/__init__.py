"""Prefect wiring over `east_tasks`: the only package that imports Prefect."""

import os

# The ephemeral server's telemetry ping fails loudly on machines without internet; opt in explicitly.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
