"""The one exception type for problems the user must fix: bad data, a config a run cannot use, a missing model,
filters that leave nothing to train on. Retrying cannot help, so the flows do not retry it and the CLI prints
it as one line and exits 2; anything else is a crash worth a retry and a traceback."""

from __future__ import annotations


class UserError(ValueError):
    pass
