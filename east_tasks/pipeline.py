"""The EAST steps as idempotent functions over the store: each computes its key, and skips if present.

Flows call these and log `StepResult`s; nothing here knows about Prefect. Keys (see DESIGN.md):
  dataset_key = hash of the problem rows;  gen_key = model_hash + dataset_key + split + sampling fields
                + prompt template + answer style
  weight_key  = gen_key + weighting fields + loss (the loss decides the rows: responses, pairs or singles)
  ckpt_key    = parent model_hash + weight_key + train fields;  eval_key = model_hash + dataset_key + eval fields
  reference log-probs (DPO / KTO / `local`) = sampling model_hash + gen_key + response, in response_logprobs
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError
from tqdm.auto import tqdm

from east_tasks import answers, generation, tracking
from east_tasks.answers import answers_match_many, extract_answer
from east_tasks.config import ExperimentConfig
from east_tasks.cost import Meter
from east_tasks.data.prompts import Prompter, make_prompter
from east_tasks.data.sources import load_splits
from east_tasks.errors import UserError
from east_tasks.evaluation import evaluate
from east_tasks.faults import pause_if_asked
from east_tasks.generation import SampleSpec, get_generator, park_generator
from east_tasks.io import fingerprint, flatten, hash_dir
from east_tasks.launch import train_with_torchrun
from east_tasks.models import BACKBONE_DIR
from east_tasks.models.bootstrap import BootstrapConfig, bootstrap_backbone
from east_tasks.monitor import best_candidate, collapsed
from east_tasks.selection import (
    Labelled,
    accepted_responses,
    assign_weights,
    label_and_score,
    mark_drops,
    monitor_selection,
    select_examples,
)
from east_tasks.shards import run_replicas, shard_jobs
from east_tasks.store import Store, claim_step, open_store, require_shared_store
from east_tasks.training import score_responses, train_weighted

log = logging.getLogger(__name__)


@dataclass
class StepResult:
    step: str
    key: str
    cached: bool
    seconds: float
    info: dict = field(default_factory=dict)

    def describe(self) -> str:
        what = "cached, skipped" if self.cached else f"computed in {self.seconds:.1f}s"
        details = ", ".join(f"{k}={v}" for k, v in self.info.items())
        return f"{self.step} [{self.key}]: {what}" + (f" ({details})" if details else "")


class ModelRef(BaseModel):
    """A model directory (or hub name) and its content hash; pydantic so Prefect can pass it around."""

    model_config = ConfigDict(frozen=True)
    path: str
    hash: str


def model_ref(path: str | Path) -> ModelRef:
    """Local dirs are hashed by content; hub names by name (pin a revision in the name for stability)."""
    p = Path(path)
    return ModelRef(path=str(path), hash=hash_dir(p) if p.is_dir() else fingerprint({"hub": str(path)}))


def preflight(cfg: ExperimentConfig) -> None:
    """Checks that need the filesystem, before anything expensive: the base model is where it is said to
    be, the trackers asked for are installed, and an experiment name means one configuration (only `rounds`
    may grow), so results never mix."""
    tracking.check_trackers(cfg)
    base = cfg.base_model
    if base.startswith(("/", "./", "../", "~")) and not Path(base).expanduser().is_dir():
        raise UserError(f"base_model {base!r}: no such directory (give a local model dir or a hub name)")
    with open_store(cfg) as store:
        rows = store.execute("SELECT config FROM experiment_rounds WHERE experiment = ? ORDER BY round LIMIT 1",
                             [cfg.experiment])
    if not rows:
        return
    # more rounds continue an experiment; how the store is reached and where metrics are reported are moot
    ignored = {"rounds", "data_dir", "store", "tracking"}
    recorded = json.loads(rows[0][0])
    with suppress(ValidationError):  # read through today's model: fields added since compare as their defaults
        recorded = json.loads(ExperimentConfig.model_validate(recorded).model_dump_json())
    old = flatten({k: v for k, v in recorded.items() if k not in ignored})
    new = flatten(json.loads(cfg.model_dump_json(exclude=ignored)))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if changed:
        diffs = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise UserError(f"experiment {cfg.experiment!r} already exists in {cfg.store_location} with another "
                        f"configuration ({diffs}); choose a new experiment name")


def ensure_backbone(cfg: ExperimentConfig) -> StepResult:
    """Rebuilds the embedded backbone if the experiment starts from it and it is missing (~10 min)."""
    t0 = time.time()
    is_embedded = Path(cfg.base_model).resolve() == BACKBONE_DIR.resolve()
    if not is_embedded or (BACKBONE_DIR / "model.safetensors").exists():
        return StepResult("backbone", "present", True, time.time() - t0)
    manifest = bootstrap_backbone(BACKBONE_DIR, BootstrapConfig())
    return StepResult("backbone", manifest["model_hash"], False, time.time() - t0,
                      {"final_loss": round(manifest["final_loss"], 4)})


def prepare_data(cfg: ExperimentConfig) -> StepResult:
    """The splits into the store; real data is checked first (`east_tasks.data.validation`), and rows dropped
    under data.on_invalid = "skip" are recorded in `data_findings` with where they were and why."""
    t0 = time.time()
    key, splits, dropped = load_splits(cfg.data, pool_gold_required=cfg.weighting.labels == "gold")
    info = {"dropped": dict(Counter(f.kind for f in dropped))} if dropped else {}
    with claim_step(cfg, f"data:{key}"), open_store(cfg) as store:
        present = store.count("problems", "dataset_key", key)
        if present == sum(len(df) for df in splits.values()):
            return StepResult("data", key, True, time.time() - t0, {"problems": present, **info})

        def replace_rows(store: Store) -> None:
            store.execute("DELETE FROM problems WHERE dataset_key = ?", [key])
            for split, df in splits.items():
                store.insert_df("problems", df.assign(dataset_key=key, split=split, idx=range(len(df))))
            store.execute("DELETE FROM data_findings WHERE dataset_key = ?", [key])
            if dropped:
                store.insert_df("data_findings", pd.DataFrame(
                    [(key, f.where, f.kind, f.detail) for f in dropped],
                    columns=["dataset_key", "location", "kind", "detail"]))

        store.atomically(replace_rows)
    return StepResult("data", key, False, time.time() - t0, {**{s: len(df) for s, df in splits.items()}, **info})


def prompter_for(cfg: ExperimentConfig, model_path: str) -> Prompter:
    """The prompt builder for this data and model (the tokenizer is read only when a chat template may apply)."""
    tokenizer = None
    if cfg.data.prompt in ("auto", "chat"):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=cfg.backend.trust_remote_code)
    return make_prompter(cfg.data.prompt, cfg.data.answer_style, cfg.data.stop, tokenizer)


def _unchecked_answers() -> Callable[[], dict]:
    """A counter of math answers that could not be checked in time (they count as wrong) from now on, for the
    step's log: `{"answers_unchecked": n}`, or nothing while n is 0."""
    before = sum(answers.timeouts.values())
    return lambda: {"answers_unchecked": n} if (n := sum(answers.timeouts.values()) - before) else {}


def _prompt_seed(seed: int, problem_id: str) -> int:
    """Per-question seed: samples do not depend on chunking, batching or resume points."""
    return int(fingerprint([seed, problem_id]), 16) % (2**31 - 1)


def _grade(preds: list[str | None], golds: list[str], style: str) -> list[bool]:
    """Each answer against its gold; against no gold (an unlabelled pool question) it is wrong, unchecked."""
    has_gold = [bool(g.strip()) for g in golds]
    matched = iter(answers_match_many([p for p, h in zip(preds, has_gold, strict=True) if h],
                                      [g for g, h in zip(golds, has_gold, strict=True) if h], style))
    return [h and next(matched) for h in has_gold]


def generate(cfg: ExperimentConfig, model: ModelRef, dataset_key: str, split: str, spec: SampleSpec,
             seed: int, step: str, limit: int | None = None, shard: tuple[int, int] | None = None,
             run_shards: Callable[[list[dict]], str] | None = None) -> StepResult:
    """Samples `spec.n` responses per question of `split` (its first `limit` questions, a probe), committing
    chunk by chunk; resumes a crash. `shard=(i, n)` samples every n-th chunk from the i-th, so n workers can share
    one generation and draw exactly the batches one worker would (east_tasks.shards). With
    `backend.data_parallel_size` > 1, or `sampling.shards` > 1 and a `run_shards` (a flow's: shards as flow runs),
    the shards run side by side and this call merges them: every question is then done, the step marked done."""
    t0 = time.time()
    prompter = prompter_for(cfg, model.path)
    spec = replace(spec, stop=prompter.stop)
    style = cfg.data.answer_style
    gen_key = fingerprint({"model": model.hash, "data": dataset_key, "split": split, "spec": spec.__dict__,
                           "seed": seed, "backend": cfg.backend.backend, "prompt": prompter.template,
                           "style": style, **({"limit": limit} if limit is not None else {})})
    with claim_step(cfg, gen_key if shard is None else f"{gen_key}/shard-{shard[0]}-of-{shard[1]}"):
        # A chunk holds as many sequences as a pool chunk: greedy evaluation in 256-question chunks left vLLM's
        # steps a quarter full (1,500 test answers 13.3 s against 9 s; the output does not depend on chunking).
        per_chunk = max(1, cfg.sampling.chunk_size * cfg.sampling.n // spec.n)
        with open_store(cfg) as store:
            if store.step_done(gen_key):
                return StepResult(step, gen_key, True, time.time() - t0,
                                  {"rows": store.count("generations", "gen_key", gen_key)})
            problems = store.problems(dataset_key, split)
            problems = problems if limit is None else problems.head(limit)
            if shard is not None:  # whole chunks, so every batch is the one a single worker would draw
                problems = problems[np.arange(len(problems)) // per_chunk % shard[1] == shard[0]]
            done = set(store.query("SELECT DISTINCT problem_id FROM generations WHERE gen_key = ?",
                                   [gen_key]).problem_id)
            # Stays "running" if the process dies: the next run resumes after the last committed chunk.
            store.mark_step(gen_key, step, cfg.experiment, "running", detail={"resumed_questions": len(done)})
        meter = Meter()
        todo = problems[~problems.problem_id.isin(done)]
        unchecked = _unchecked_answers()
        engine = {}
        shards, runner = _shard_plan(cfg, run_shards) if len(todo) and shard is None else (1, None)
        if runner:
            require_shared_store(cfg.store.url, f"a generation in {shards} shards (sampling.shards, "
                                                 "backend.data_parallel_size)")
            engine = {"engine": runner(shard_jobs(cfg, model, dataset_key, split, spec, seed, step, limit, shards))}
        elif len(todo):
            generator = get_generator(model.path, cfg.backend)
            engine = {"engine": generation.last_engine_event}
            for start in tqdm(range(0, len(todo), per_chunk), desc=step, unit="chunk"):
                chunk = todo.iloc[start : start + per_chunk]
                prompts = [prompter(q) for q in chunk.question]
                outs = generator.generate(prompts, [_prompt_seed(seed, p) for p in chunk.problem_id], spec)
                samples = [(pid, i, prompt, c, gold) for pid, prompt, gold, completions in zip(
                    chunk.problem_id, prompts, chunk.answer, outs, strict=True) for i, c in enumerate(completions)]
                preds = [extract_answer(c.text, style) for _, _, _, c, _ in samples]
                df = pd.DataFrame([(gen_key, pid, i, prompt, c.text, pred, c.num_tokens)
                                   for (pid, i, prompt, c, _), pred in zip(samples, preds, strict=True)],
                                  columns=["gen_key", "problem_id", "sample_idx", "prompt", "text", "pred_answer",
                                           "num_tokens"])
                # graded from the Python values: pandas' string columns hold a missing answer as NaN, not None
                df["correct"] = _grade(preds, [gold for *_, gold in samples], style)
                # The store is opened per chunk, so readers (`east report`) can get in between chunks.
                with open_store(cfg) as store:  # one statement: the chunk commits whole or not at all
                    store.insert_df("generations", df)
                pause_if_asked(step)  # test hook (east_tasks/faults.py): a kill between committed chunks
        with open_store(cfg) as store:
            n_rows, tokens = store.execute("SELECT count(*), coalesce(sum(num_tokens), 0) FROM generations "
                                           "WHERE gen_key = ?", [gen_key])[0]
            if shard is None:
                store.mark_step(gen_key, step, cfg.experiment, "done", time.time() - t0, {"rows": n_rows},
                                meter.cost(tokens_generated=int(tokens)))
        return StepResult(step, gen_key, False, time.time() - t0,
                          {"rows": n_rows, "resumed_questions": len(done), "new_questions": len(todo), **engine,
                           **unchecked()})


def _shard_plan(cfg: ExperimentConfig, run_shards: Callable[[list[dict]], str] | None,
                ) -> tuple[int, Callable[[list[dict]], str] | None]:
    """How many shards a generation runs in, and what runs them (None: this process samples it whole)."""
    if run_shards and cfg.sampling.shards > 1:
        return cfg.sampling.shards, run_shards
    if cfg.backend.data_parallel_size > 1:
        return cfg.backend.data_parallel_size, partial(run_replicas,
                                                       tensor_parallel_size=cfg.backend.tensor_parallel_size)
    return 1, None


def response_logprobs(cfg: ExperimentConfig, model: ModelRef, gen_key: str, responses: pd.DataFrame) -> np.ndarray:
    """[rows, 2] summed log-prob and token count of each (problem_id, sample_idx, prompt, text) response
    under `model`, computed once per model and generation set and cached in `response_logprobs`."""
    cols = ["problem_id", "sample_idx"]
    with claim_step(cfg, f"logprobs:{model.hash}:{gen_key}"):
        with open_store(cfg) as store:
            have = store.query("SELECT problem_id, sample_idx, logp_sum, n_tokens FROM response_logprobs "
                               "WHERE model_hash = ? AND gen_key = ?", [model.hash, gen_key])
        todo = responses.drop_duplicates(cols).merge(have, on=cols, how="left")
        todo = todo[todo.logp_sum.isna()]
        if len(todo):
            park_generator()  # free what scoring needs (an accelerator engine's memory)
            scores = score_responses(model.path, list(todo.prompt), list(todo.text), cfg.backend.max_model_len,
                                     bf16=cfg.train.bf16, trust_remote_code=cfg.backend.trust_remote_code)
            new = todo[cols].assign(model_hash=model.hash, gen_key=gen_key, logp_sum=scores[:, 0],
                                    n_tokens=scores[:, 1].astype(int))
            with open_store(cfg) as store:
                store.insert_df("response_logprobs", new)
            have = pd.concat([have, new[have.columns]], ignore_index=True)
        return responses[cols].merge(have, on=cols, how="left")[["logp_sum", "n_tokens"]].to_numpy(np.float64)


def _labelled_pool(cfg: ExperimentConfig, gen_key: str, dataset_key: str) -> tuple[Labelled, pd.DataFrame]:
    """A pool generation's rows labelled for selection (gold or majority), drops marked, and the pool problems."""
    with open_store(cfg) as store:
        gens = store.query("SELECT * FROM generations WHERE gen_key = ? ORDER BY problem_id, sample_idx",
                           [gen_key])
        problems = store.problems(dataset_key, "pool")
    labelled = label_and_score(gens, problems, cfg.weighting, cfg.data.answer_style)
    mark_drops(labelled.stats, cfg.weighting)
    return labelled, problems


def select_and_weight(cfg: ExperimentConfig, gen_key: str, dataset_key: str, parent: ModelRef) -> StepResult:
    """Cluster, score, label (gold or majority), filter, build the loss's rows and weight them: writes clusters,
    question_stats, pseudo_labels, round_monitor and training_examples. `parent` (the sampling model) scores
    responses for the `local` baseline and for the label-free self-reward."""
    t0 = time.time()
    weight_key = fingerprint({"gen": gen_key, "weighting": cfg.weighting.model_dump(), "loss": cfg.train.loss,
                              "monitor_target": cfg.balance.target_correct})
    with claim_step(cfg, weight_key):
        with open_store(cfg) as store:
            if store.step_done(weight_key):
                n = store.count("training_examples", "weight_key", weight_key)
                return StepResult("select+weight", weight_key, True, time.time() - t0, {"examples": n})
        unchecked, meter = _unchecked_answers(), Meter()
        labelled, problems = _labelled_pool(cfg, gen_key, dataset_key)
        monitor = monitor_selection(labelled, problems, cfg.balance.target_correct)
        preference = None
        if cfg.weighting.labels == "majority" and cfg.weighting.self_reward == "logprob":
            accepted = labelled.gens[accepted_responses(labelled)]
            scores = response_logprobs(cfg, parent, gen_key, accepted)
            preference = pd.Series(scores[:, 0] / np.maximum(scores[:, 1], 1),
                                   index=pd.MultiIndex.from_frame(accepted[["problem_id", "sample_idx"]]))
        stats = labelled.stats
        examples = select_examples(labelled.gens, stats, cfg.weighting, cfg.train.loss, preference)
        logps = (response_logprobs(cfg, parent, gen_key, examples.rename(columns={"response": "text"}))
                 if cfg.weighting.strategy == "local" else None)
        examples = assign_weights(examples, stats, cfg.weighting, logps)
        with open_store(cfg) as store:
            def replace_rows(store: Store) -> None:
                store.insert_df("clusters", labelled.clusters.assign(gen_key=gen_key))  # present rows are kept
                for table, rows in (("question_stats", stats.assign(gen_key=gen_key)), ("round_monitor", monitor),
                                    ("pseudo_labels", labelled.labels), ("training_examples", examples)):
                    store.execute(f"DELETE FROM {table} WHERE weight_key = ?", [weight_key])
                    if rows is not None:
                        store.insert_df(table, rows.assign(weight_key=weight_key))

            store.atomically(replace_rows)
            reasons = stats.drop_reason.fillna("kept").value_counts().to_dict()
            overall = monitor.iloc[0]
            info = {"examples": len(examples), **{k: int(v) for k, v in reasons.items()},
                    "mean_entropy_kept": round(float(stats.entropy[stats.drop_reason.isna()].mean()), 3)
                    if reasons.get("kept") else None,
                    **{m: v for m in ("pass_at_n", "balance", "label_accuracy") if (v := _rounded(overall[m], 3))
                       is not None}}
            store.mark_step(weight_key, "select+weight", cfg.experiment, "done", time.time() - t0, info, meter.cost())
        return StepResult("select+weight", weight_key, False, time.time() - t0, {**info, **unchecked()})


def pool_spec(cfg: ExperimentConfig) -> SampleSpec:
    s = cfg.sampling
    return SampleSpec(s.n, s.temperature, s.top_p, s.max_tokens)


def choose_sampling(cfg: ExperimentConfig, parent: ModelRef, dataset_key: str,
                    round_: int) -> tuple[SampleSpec, list[StepResult]]:
    """B-STaR's auto-balance: sample the first `balance.probe_size` pool questions with every candidate
    temperature (and sample count), score each candidate's balance under the round's selection, and return the
    best candidate's spec with the probes' steps (cached generations like any other; their cost is the round's).
    Every candidate and the choice go to `balance_probes`. Without `balance.auto`: the configured sampling."""
    if not cfg.balance.auto:
        return pool_spec(cfg), []
    b, base = cfg.balance, pool_spec(cfg)
    results, rows = [], []
    for n in b.sample_counts or (base.n,):
        for temperature in b.temperatures:
            spec = replace(base, n=n, temperature=temperature)
            gen = generate(cfg, parent, dataset_key, "pool", spec, cfg.sampling.seed + round_,
                           f"probe pool round {round_} T={temperature:g} n={n}", limit=b.probe_size)
            labelled, problems = _labelled_pool(cfg, gen.key, dataset_key)
            overall = monitor_selection(labelled, problems, cfg.balance.target_correct).iloc[0]
            results.append(gen)
            rows.append({"experiment": cfg.experiment, "round": round_, "temperature": temperature, "n": n,
                         "gen_key": gen.key, **{c: overall[c] for c in ("questions", "pass_at_n", "distinct_correct",
                                                                        "precision", "recall", "balance")}})
    probes = pd.DataFrame(rows)
    if probes.balance.isna().all():
        raise UserError(f"balance.auto: the {b.probe_size} probed pool questions have no gold answers, and the "
                        "balance score needs them; label gold on some of the pool, or leave balance.auto off")
    best = best_candidate(probes)
    probes["chosen"] = np.arange(len(probes)) == best
    def replace_rows(store: Store) -> None:
        store.execute("DELETE FROM balance_probes WHERE experiment = ? AND round = ?", [cfg.experiment, round_])
        store.insert_df("balance_probes", probes)

    with open_store(cfg) as store:
        store.atomically(replace_rows)
    chosen = probes.iloc[best]
    return replace(base, n=int(chosen.n), temperature=float(chosen.temperature)), results


def check_collapse(cfg: ExperimentConfig, round_: int, weight_key: str) -> None:
    """Label-free rounds: refuse to train on a collapsed pool (`east_tasks.monitor.collapsed`)."""
    if cfg.weighting.labels != "majority":
        return
    with open_store(cfg) as store:
        (entropy,), = store.execute("SELECT avg(entropy) FROM question_stats WHERE weight_key = ?", [weight_key])
        accuracy = store.execute("SELECT label_accuracy FROM round_monitor WHERE weight_key = ? AND tier = 'all'",
                                 [weight_key])
        before = store.execute("SELECT m.label_accuracy FROM experiment_rounds r JOIN round_monitor m USING "
                               "(weight_key) WHERE r.experiment = ? AND r.round = ? AND m.tier = 'all'",
                               [cfg.experiment, round_ - 1])
    now = accuracy[0][0] if accuracy else None
    prev = before[0][0] if before else None
    if collapsed(entropy, now, prev, cfg.weighting.collapse_entropy):
        labels = "" if now is None else (f"; the pseudo-labels match gold on {now:.1%} of the labelled questions"
                                         + ("" if prev is None else f", against {prev:.1%} the round before"))
        raise UserError(f"{cfg.experiment} round {round_}: label-free self-training has collapsed: the pool's mean "
                        f"answer entropy is {entropy:.3f} bits (weighting.collapse_entropy = "
                        f"{cfg.weighting.collapse_entropy:g}){labels}. Not training on it: return to gold labels, "
                        "raise weighting.min_agreement, stop at the round before, or set "
                        "weighting.collapse_entropy=0 to train anyway")


def _with_reference_logps(cfg: ExperimentConfig, parent: ModelRef, weight_key: str,
                          examples: pd.DataFrame) -> pd.DataFrame:
    """DPO / KTO rows get the parent's (the reference model's) log-prob of their response(s)."""
    if cfg.train.loss == "sft":
        return examples
    with open_store(cfg) as store:
        gen_key = store.execute("SELECT any_value(gen_key) FROM question_stats WHERE weight_key = ?",
                                [weight_key])[0][0]
    chosen = examples.rename(columns={"response": "text"})
    examples = examples.assign(ref_logp=response_logprobs(cfg, parent, gen_key, chosen)[:, 0])
    if cfg.train.loss == "dpo":
        rejected = examples[["problem_id", "rejected_idx", "prompt", "rejected"]].set_axis(
            ["problem_id", "sample_idx", "prompt", "text"], axis=1)
        examples = examples.assign(ref_rejected_logp=response_logprobs(cfg, parent, gen_key, rejected)[:, 0])
    return examples


def earlier_weight_keys(cfg: ExperimentConfig, round_: int) -> list[str]:
    """With `train.accumulate`, the weight keys of rounds 1..round_-1 of this experiment (their kept examples
    are trained on again in round `round_`); else none."""
    if not cfg.train.accumulate:
        return []
    with open_store(cfg) as store:
        rows = store.execute("SELECT round, weight_key FROM experiment_rounds WHERE experiment = ? AND round >= 1 "
                             "AND round < ? ORDER BY round", [cfg.experiment, round_])
    if [r for r, _ in rows] != list(range(1, round_)):
        raise UserError(f"train.accumulate: {cfg.experiment} has rounds {[r for r, _ in rows]} recorded before "
                        f"round {round_}; every earlier round must be")
    return [key for _, key in rows]


_DROP_HINTS = {
    "no_correct": "no sample was correct: raise sampling.n or sampling.temperature, or start from a stronger model",
    "all_correct": "every sample was correct: weighting.drop_all_correct=false keeps them",
    "no_wellformed_incorrect": "no incorrect sample had an answer: weighting.require_wellformed_incorrect=false "
                               "keeps them",
    "no_label": "no answer was given by weighting.min_agreement of the samples (or two tied): lower it, or raise "
                "sampling.n",
}


def nothing_to_train_on(cfg: ExperimentConfig, weight_key: str) -> str:
    """Why a round has no training example, filter by filter, and what to change."""
    with open_store(cfg) as store:
        reasons = store.query("SELECT drop_reason, count(*) AS n FROM question_stats WHERE weight_key = ? "
                              "GROUP BY drop_reason ORDER BY n DESC", [weight_key])
    total = int(reasons.n.sum())
    why = "; ".join(f"{n} {_DROP_HINTS.get(r, r)}" for r, n in zip(reasons.drop_reason, reasons.n, strict=True))
    return f"{cfg.experiment}: no training examples: every one of the {total} pool questions was filtered out ({why})"


def train(cfg: ExperimentConfig, parent: ModelRef, weight_key: str,
          earlier_keys: list[str] | tuple[str, ...] = (), run_name: str | None = None) -> tuple[StepResult, ModelRef]:
    """Fine-tunes `parent` on the examples of `weight_key` (and, accumulating, of `earlier_keys` first);
    `run_name` names its training curve in the trackers."""
    t0 = time.time()
    keys = [*earlier_keys, weight_key]
    ckpt_key = fingerprint({"parent": parent.hash, "weights": weight_key, "train": cfg.train.model_dump(),
                            **({"earlier": list(earlier_keys)} if earlier_keys else {})})
    out_dir = cfg.checkpoint_dir / ckpt_key
    replaced = {}
    with claim_step(cfg, ckpt_key):
        with open_store(cfg) as store:
            row = store.query("SELECT model_hash, train_loss FROM checkpoints WHERE ckpt_key = ?", [ckpt_key])
            if len(row) and out_dir.is_dir():
                if hash_dir(out_dir) == row.model_hash[0]:
                    cached = StepResult("train", ckpt_key, True, time.time() - t0,
                                        {"train_loss": round(float(row.train_loss[0]), 4)})
                    return cached, ModelRef(path=str(out_dir), hash=row.model_hash[0])
                replaced = {"retrained": f"checkpoint {out_dir} no longer matched its stored hash {row.model_hash[0]}"}
                log.warning(replaced["retrained"])
            for partial in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):  # left by a run killed while saving
                shutil.rmtree(partial, ignore_errors=True)
            examples = [store.query("SELECT * FROM training_examples WHERE weight_key = ? ORDER BY example_idx", [k])
                        for k in keys]
        if examples[-1].empty:
            raise UserError(nothing_to_train_on(cfg, weight_key))
        meter = Meter()  # the reference log-probs DPO / KTO need are part of what the step costs
        examples = pd.concat([_with_reference_logps(cfg, parent, k, ex) for k, ex in zip(keys, examples, strict=True)],
                             ignore_index=True)
        park_generator()  # free what training needs (an accelerator engine's memory)
        with tracking.training_run(cfg, run_name or f"{cfg.experiment}-{ckpt_key}") as tracked:
            launch = train_with_torchrun if cfg.train.launcher == "torchrun" else train_weighted
            summary = launch(parent.path, examples, cfg.train, out_dir, cfg.backend.max_model_len,
                             cfg.backend.trust_remote_code, tracked)
        with open_store(cfg) as store:
            store.upsert("checkpoints", {"ckpt_key": ckpt_key, "path": str(out_dir),
                                         "model_hash": summary["model_hash"], "parent_hash": parent.hash,
                                         "weight_key": weight_key, "train_loss": summary["train_loss"],
                                         "created_at": time.time()})
            info = {"train_loss": round(summary["train_loss"], 4), "steps": summary["steps"],
                    "examples": summary["n_examples"], **replaced}
            store.mark_step(ckpt_key, "train", cfg.experiment, "done", time.time() - t0, info,
                            meter.cost(tokens_trained=summary["tokens_trained"]))
        model = ModelRef(path=str(out_dir), hash=summary["model_hash"])
        return StepResult("train", ckpt_key, False, time.time() - t0, info), model


class EvalKeys(BaseModel):
    """The evaluation keys of one model: test, and validation where the data has that split."""

    model_config = ConfigDict(frozen=True)
    test: str
    validation: str | None = None
    steps: tuple[str, ...] = ()  # every step key the evaluation ran or reused (generations included)


def _rounded(v: float | None, digits: int = 4) -> float | None:
    return None if v is None or pd.isna(v) else round(float(v), digits)


def evaluate_split(cfg: ExperimentConfig, model: ModelRef, dataset_key: str, split: str, k: int) -> list[StepResult]:
    """Greedy (and, with k > 0, k-sample) generations on `split`, then metrics into `evaluations`."""
    ev = cfg.eval
    generated = [generate(cfg, model, dataset_key, split, SampleSpec(1, 0.0, 1.0, ev.max_tokens), ev.seed,
                          f"generate {split} greedy")]
    if k:
        generated.append(generate(cfg, model, dataset_key, split, SampleSpec(k, ev.temperature, 1.0, ev.max_tokens),
                                  ev.seed, f"generate {split} k={k}"))
    greedy, sampled = generated[0], (generated[1] if k else None)
    t0, meter = time.time(), Meter()
    eval_key = fingerprint({"greedy": greedy.key, "sampled": (sampled or greedy).key})
    step = f"evaluate {split}"
    with claim_step(cfg, eval_key), open_store(cfg) as store:
        row = store.query("SELECT greedy_acc, maj_acc, pass_acc FROM evaluations WHERE eval_key = ?", [eval_key])
        if len(row):
            info = {c: _rounded(row[c][0]) for c in row.columns}
            return [*generated, StepResult(step, eval_key, True, time.time() - t0, info)]
        # In sample order: a majority tie goes to the earliest sample, whatever order the rows were written in
        gens = {s.key: store.query("SELECT problem_id, pred_answer, correct FROM generations WHERE gen_key = ? "
                                   "ORDER BY problem_id, sample_idx", [s.key]) for s in generated}
        result = evaluate(gens[greedy.key], gens[sampled.key] if sampled else None,
                          store.problems(dataset_key, split), k, cfg.data.answer_style)
        store.insert_row("evaluations", {  # a concurrent run's row, if there is one, is equal
            "eval_key": eval_key, "model_hash": model.hash, "dataset_key": dataset_key,
            "n_questions": result.n_questions, "k": result.k, "greedy_acc": result.greedy_acc,
            "maj_acc": result.maj_acc, "pass_acc": result.pass_acc, "by_tier": json.dumps(result.by_tier),
            "created_at": time.time()})
        info = {m: _rounded(getattr(result, m)) for m in ("greedy_acc", "maj_acc", "pass_acc")}
        store.mark_step(eval_key, step, cfg.experiment, "done", time.time() - t0, info, meter.cost())
    return [*generated, StepResult(step, eval_key, False, time.time() - t0, info)]


def evaluate_model(cfg: ExperimentConfig, model: ModelRef, dataset_key: str) -> tuple[list[StepResult], EvalKeys]:
    """The test split (greedy, maj@k, pass@k) and, when there is one, the validation split (greedy only)."""
    test = evaluate_split(cfg, model, dataset_key, "test", cfg.eval.k)
    validation = evaluate_split(cfg, model, dataset_key, "validation", 0) if cfg.data.validation_size else []
    return test + validation, EvalKeys(test=test[-1].key, validation=validation[-1].key if validation else None,
                                       steps=tuple(r.key for r in test + validation))


def record_round(cfg: ExperimentConfig, round_: int, model: ModelRef, evals: EvalKeys,
                 gen_key: str | None = None, weight_key: str | None = None, probe_keys: Iterable[str] = ()) -> None:
    """The round's row: its model, evaluations and every step it ran or reused (auto-balance probes too)."""
    with open_store(cfg) as store:
        n_kept = store.count("training_examples", "weight_key", weight_key) if weight_key else None
        ckpt = store.execute("SELECT ckpt_key FROM checkpoints WHERE model_hash = ? AND weight_key = ?",
                             [model.hash, weight_key]) if weight_key else []
        steps = [k for k in (*probe_keys, gen_key, weight_key, *(c for (c,) in ckpt[:1]), *evals.steps) if k]
        store.record_round(cfg.experiment, round_, model_hash=model.hash, model_path=model.path,
                           eval_key=evals.test, val_eval_key=evals.validation, gen_key=gen_key,
                           weight_key=weight_key, n_kept=n_kept, config=cfg.model_dump_json(),
                           step_keys=json.dumps(steps))
    if cfg.tracking.report_to:
        with open_store(cfg) as store:
            metrics = tracking.round_metrics(store, cfg.experiment, round_)
        tracking.log_round(cfg, round_, metrics)  # the store is not held while the trackers are reached
