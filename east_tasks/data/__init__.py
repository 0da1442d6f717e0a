"""Datasets: the embedded arithmetic task and loaders for real benchmarks."""

from east_tasks.data.arith import Problem, arith_splits, make_problem, make_split
from east_tasks.data.prompts import format_prompt

__all__ = ["Problem", "arith_splits", "format_prompt", "make_problem", "make_split"]
