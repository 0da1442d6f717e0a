"""The pure core: answers and clustering, entropy → weight, the selection's rules, losses, metrics and the B-STaR
monitor. Functions of numbers and DataFrames: no store, no files, no engines (an import-linter contract)."""
