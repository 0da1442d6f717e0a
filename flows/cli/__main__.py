"""`python -m flows.cli`, the same as the `east` console script."""

from flows.cli import main

main()
