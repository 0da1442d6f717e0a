"""The EAST steps, one module each, every one run by `runner.run_step` (key → claim → look up → check → compute →
commit → after commit).

data (preflight, backbone, the splits) → generation (the pool, evaluations, auto-balance's probes; `pool`: a round's
pool, fixed or adaptive) → balance → selection (+ weighting) → scoring (reference log-probs) → training → evaluation
→ record. Keys: `keys`.
"""

from east_tasks.engines import grading
from east_tasks.steps.balance import choose_sampling, pool_spec
from east_tasks.steps.data import ensure_backbone, preflight, prepare_data
from east_tasks.steps.evaluation import EvalKeys, evaluate_model, evaluate_split
from east_tasks.steps.experiments import claim_experiment
from east_tasks.steps.generation import generate, prompter_for, run_shard
from east_tasks.steps.guard import RoundRejected, guard_off
from east_tasks.steps.model import ModelRef, model_ref
from east_tasks.steps.pool import sample_pool
from east_tasks.steps.record import record_round
from east_tasks.steps.runner import StepResult, known_failure, retryable, run_step
from east_tasks.steps.scoring import response_logprobs
from east_tasks.steps.selection import nothing_to_train_on, select_and_weight
from east_tasks.steps.training import train

grading.install()  # the steps grade math and users' answer styles in the engines' bounded workers

__all__ = ["EvalKeys", "ModelRef", "RoundRejected", "StepResult", "choose_sampling", "claim_experiment",
           "ensure_backbone", "evaluate_model", "evaluate_split", "generate", "guard_off", "known_failure",
           "model_ref", "nothing_to_train_on", "pool_spec", "preflight", "prepare_data", "prompter_for",
           "record_round", "response_logprobs", "retryable", "run_shard", "run_step", "sample_pool",
           "select_and_weight", "train"]
