"""Hand-off: a round's model as a plain Hugging Face model directory with a model card, and the rows it trained on
as a `datasets` dataset in TRL's column conventions (`east export model|data`, `east.export_model|export_data`).

Both read the store alone (the round's checkpoint, its results and costs, its training rows) and write their
directory atomically: a temp dir beside it, renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from east_tasks.errors import EnvironmentFault, UserError
from east_tasks.io import atomic_dir, hash_dir, is_model_file
from east_tasks.paths import resolve_stored_path
from east_tasks.report.frames import round_costs, round_results
from east_tasks.report.markdown import cost_markdown, fmt
from east_tasks.report.statistics import cost_summary
from east_tasks.store import Store

if TYPE_CHECKING:
    import datasets

# TRL's dataset columns for each loss (SFTTrainer: prompt-completion; DPOTrainer: preference; KTOTrainer:
# unpaired preference), then what east adds: the row's weight, its question's answer entropy, where it came from.
TRL_COLUMNS: dict[str, tuple[str, ...]] = {"sft": ("prompt", "completion"), "dpo": ("prompt", "chosen", "rejected"),
                                           "kto": ("prompt", "completion", "label")}
EAST_COLUMNS = ("weight", "entropy", "problem_id", "round", "experiment")
MEANING_OF_A = ("a = 0 is vanilla self-training (every kept question weighs the same); a > 0 puts more weight on "
                "questions the model is uncertain about (a higher answer entropy), a < 0 on confident ones. Weights "
                "are normalised to mean 1 over the round's rows, so the learning rate means the same for every a.")

MAPPINGS = {"power": "weight = max(u, eps)^a / mean", "exp": "weight = exp(a * u) / mean"}
UNCERTAINTY = {"entropy": "answer entropy in bits (EAST)", "local": "minus mean token log-prob of the response",
               "accuracy": "1 - fraction of its samples correct", "rejected": "number of incorrect samples"}


def parse_target(target: str) -> tuple[str, int | None]:
    """`EXP` or `EXP:ROUND` (experiment names hold no colon) -> (experiment, round or None for the last)."""
    experiment, sep, round_ = target.rpartition(":")
    if not sep:
        return target, None
    if not round_.isdigit():
        raise UserError(f"{target!r}: expected EXPERIMENT or EXPERIMENT:ROUND with ROUND a number (0 = the base "
                        "model), e.g. tiny:2")
    return experiment, int(round_)


@dataclass(frozen=True)
class RoundRef:
    """One recorded round of an experiment, as the store has it."""

    experiment: str
    round: int
    model_path: str  # round 0: the base model as given; later rounds: the checkpoint, relative to the data dir
    model_hash: str
    config: dict  # the round's configuration, as recorded
    weight_keys: dict[int, str]  # rounds 1..round -> the weight key of its training rows

    @property
    def loss(self) -> str:
        return self.config["train"]["loss"]


def find_round(store: Store, experiment: str, round_: int | None = None) -> RoundRef:
    """Round `round_` of `experiment` (default: its last recorded round); one line naming what is known if not."""
    row = store.experiment_round(experiment, round_)
    if row is None:
        if experiment not in (known := store.experiments()):
            raise UserError(f"no experiment {experiment!r} in {store.location}; known: {', '.join(known) or 'none'}")
        recorded = store.round_table(experiment)["round"].tolist()
        raise UserError(f"experiment {experiment!r} has no round {round_}; recorded rounds: "
                        f"{', '.join(map(str, recorded))}")
    last, model_path, model_hash, config = row
    keys = dict(store.round_weight_keys(experiment, last + 1))
    return RoundRef(experiment, last, model_path, model_hash, json.loads(config), keys)


# --- the model ---------------------------------------------------------------------------------------------------
def model_dir(ref: RoundRef, data_dir: Path) -> Path:
    """The round's model on this machine, checked against the hash the store recorded for it."""
    if ref.round == 0:
        path = Path(ref.model_path).expanduser()
        if not path.is_dir():
            raise UserError(f"{ref.experiment}:0 is the base model {ref.model_path}, which is not a directory here "
                            "(a hub name: use it from the hub); export a trained round, e.g. "
                            f"{ref.experiment}:1")
    else:
        path = resolve_stored_path(data_dir, ref.model_path)
        if not path.is_dir():
            raise UserError(f"{ref.experiment}:{ref.round}: checkpoint {path} is missing (`east gc --keep-last` "
                            f"removes earlier rounds'); rerun the experiment to train it again (`east run "
                            f"--preset {ref.config.get('preset', 'tiny')} --experiment {ref.experiment}`)")
    if (found := hash_dir(path)) != ref.model_hash:
        raise EnvironmentFault(f"{ref.experiment}:{ref.round}: model {path} hashes to {found}, not the "
                               f"{ref.model_hash} the store recorded: it was altered; move it aside and rerun the "
                               "experiment to train it again")
    return path


def _is_export(path: Path) -> bool:
    """A directory an earlier export wrote: its card's front matter has the east tag."""
    card = path / "README.md"
    return card.is_file() and card.read_text().startswith("---\n") and "\n- east\n" in card.read_text()


def _readable(tmp: Path) -> None:
    """The export's directory with the modes a new directory gets (the temp dir it was written in is private)."""
    mask = os.umask(0)
    os.umask(mask)
    tmp.chmod(0o777 & ~mask)


def _check_out(out_dir: Path, overwrite: bool) -> None:
    """DIR must be new or empty; `overwrite` replaces an earlier export, never a directory of something else."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file: give a directory to export to")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (overwrite and _is_export(out_dir)):
        raise UserError(f"{out_dir} exists and is not empty: give a new directory" + (
            ", or --overwrite to replace an earlier export there" if not overwrite else
            "; --overwrite replaces only an earlier export (its README.md has the east tag)"))


def export_model(store: Store, data_dir: Path, ref: RoundRef, out_dir: Path, overwrite: bool = False) -> Path:
    """The round's model as a plain Hugging Face directory (weights, config, tokenizer, generation config) with a
    model card (README.md), for `AutoModelForCausalLM.from_pretrained(out_dir)`."""
    _check_out(out_dir, overwrite)
    source = model_dir(ref, data_dir)
    card = model_card(store, ref)
    with atomic_dir(out_dir) as tmp:
        for f in sorted(p for p in source.rglob("*") if is_model_file(p)):  # what the model's hash covers
            (tmp / f.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, tmp / f.relative_to(source))  # the file's data, with a new file's modes
        if not (tmp / "generation_config.json").exists():  # checkpoints saved without one: the model's defaults
            from transformers import AutoConfig, GenerationConfig

            GenerationConfig.from_model_config(AutoConfig.from_pretrained(tmp)).save_pretrained(tmp)
        (tmp / "README.md").write_text(card)
        _readable(tmp)
    return out_dir


def _east_version() -> str:
    try:
        return version("east")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


def _is_hub_name(name: str | None) -> bool:
    return bool(name) and not name.startswith(("/", ".", "~")) and name.count("/") == 1 and not Path(name).exists()


def _front_matter(cfg: dict) -> str:
    lines = ["---", "library_name: transformers", "pipeline_tag: text-generation"]
    if _is_hub_name(cfg["base_model"]):  # the hub checks base_model names a model of its own; a local dir is not
        lines.append(f"base_model: {cfg['base_model']}")
    lines += ["tags:", "- east", "- self-training"]
    data = cfg["data"]
    if hubs := [p for p in (data.get("path"), data.get("test_path")) if _is_hub_name(p)]:
        lines += ["datasets:", *(f"- {p}" for p in dict.fromkeys(hubs))]
    return "\n".join([*lines, "---"])


def _backbone_note(base_model: str) -> str:
    if Path(base_model).parts[-3:] != ("east_tasks", "models", "backbone"):
        return ""
    return (": the tiny Llama committed with east, which `east bootstrap` trains on labelled arithmetic chains of "
            "2-3 steps (mostly)")


def _accuracy_markdown(results: pd.DataFrame) -> str:
    sampled = results.maj_acc.notna().any()
    names = ["round", "test greedy", *(["maj@k", "pass@k"] if sampled else []), "validation greedy", "kept questions"]
    lines = ["| " + " | ".join(names) + " |", "|---" * len(names) + "|"]
    for r in results.itertuples(index=False):
        name = "0 (base model)" if r.round == 0 else str(r.round)
        cells = [name, fmt(r.greedy_acc), *([fmt(r.maj_acc), fmt(r.pass_acc)] if sampled else []),
                 fmt(r.val_greedy_acc), "-" if pd.isna(r.n_kept) else str(int(r.n_kept))]
        lines.append("| " + " | ".join(cells) + " |")
    first = results.iloc[0]
    k = f"; maj@k and pass@k from k = {int(first.k)} samples per question" if sampled else ""
    return "\n".join([*lines, "", f"Test: {int(first.n_questions)} held-out questions, greedy decoding{k}. "
                      "Validation (greedy) is where every choice is made; test is not used to choose."])


def _compute_markdown(costs: pd.DataFrame, experiment: str) -> str:
    lines = ["| round | wall s | CPU s | GPU s | tokens generated | tokens trained |", "|---" * 6 + "|"]
    for r in costs.itertuples(index=False):
        lines.append(f"| {r.round} | {r.wall_s:,.0f} | {r.cpu_s:,.0f} | {r.gpu_s:,.0f} | {r.tokens_generated:,.0f} | "
                     f"{r.tokens_trained:,.0f} |")
    summary = cost_summary(costs) if (costs["round"] > 0).any() else None
    return "\n".join(lines) + ("" if summary is None else "\n\n" + cost_markdown(summary, experiment))


def model_card(store: Store, ref: RoundRef) -> str:
    """README.md of an exported model: what it is, how it was made, how well it does and what that cost."""
    cfg, w, t, d = ref.config, ref.config["weighting"], ref.config["train"], ref.config["data"]
    results = round_results(store, ref.experiment)
    costs = round_costs(store, [ref.experiment])
    costs = costs[costs["round"] <= ref.round]
    this = results[results["round"] == ref.round].iloc[0]
    what = "the base model, before any self-training" if ref.round == 0 else \
        f"the model after round {ref.round} of EAST self-training"
    source = "the embedded arithmetic word problems (east_tasks/data/arith.py)" if d["source"] == "arith" else \
        f"{d['source']}: {d.get('path')}"
    sizes = f"pool {d['pool_size']} questions, validation {d['validation_size']}, test {d['test_size']}"
    accumulate = ("each round trains on the kept rows of every round so far (train.accumulate), each with the "
                  "weight its own round gave it") if t.get("accumulate") else "each round trains on its own rows"
    recorded = int(results["round"].max())
    results = results[results["round"] <= ref.round]
    rounds = ", ".join(f"round {r}: {h}" for r, h in zip(results["round"], results.model_hash, strict=True))
    return f"""{_front_matter(cfg)}

# {ref.experiment}, round {ref.round}

This is {what} in the experiment `{ref.experiment}`, exported by `east export model` from a run of
[east](https://arxiv.org/abs/2503.23913) (EAST: entropy-based adaptive weighting for self-training). Test
accuracy (greedy): {fmt(this.greedy_acc)}; model hash {ref.model_hash}.

## Base model

`{cfg['base_model']}`{_backbone_note(cfg['base_model'])}. Load this one with `AutoModelForCausalLM.from_pretrained` and
`AutoTokenizer.from_pretrained`; prompts are `{d.get('prompt')}` style, as in training.

## Method and weighting

Each round the model samples {cfg['sampling']['n']} responses per unlabelled question (temperature
{cfg['sampling']['temperature']}), answers are clustered, and questions are kept or dropped by the filters; the
round fine-tunes on the kept questions' responses with loss `{t['loss']}`, each row's loss multiplied by its weight.

- weighting strategy: `{w['strategy']}`; mapping: `{w['mapping']}`; a = {w['a']}; labels: `{w.get('labels', 'gold')}`
- what a means: {MEANING_OF_A} The {w['mapping']} mapping: {MAPPINGS[w['mapping']]}, with u the question's
  {UNCERTAINTY[w['strategy']]}.
- learning rate {t['lr']}, {t['epochs']} epochs, batch size {t['batch_size']}; {accumulate}

## Rounds

Round {ref.round} of the {recorded} rounds `{ref.experiment}` has recorded. The model of each round up to it (its
content hash, `io.hash_dir`): {rounds}. Each round starts from the one before; round 0 is the base model.

## Data

Source: {source}; answer style `{d.get('answer_style')}`; {sizes}. Only the pool's answers (not its solutions) are
used to select training rows. `east export data {ref.experiment}:{ref.round} DIR` writes the rows this round
kept (`--accumulated`: every row it trained on), in TRL's columns.

## Accuracy per round

{_accuracy_markdown(results)}

## Compute

What each round's steps cost when they were computed (`step_status`; round 0 is the base model's evaluation).

{_compute_markdown(costs, ref.experiment)}

## How it was produced

east {_east_version()}, preset `{cfg.get('preset')}`: `east run --preset {cfg.get('preset')} --experiment
{ref.experiment}` with this configuration (as recorded in the store):

```json
{json.dumps(cfg, indent=2, sort_keys=True, default=str)}
```
"""


def push_to_hub(out_dir: Path, repo: str) -> str:
    """Uploads an exported directory to the Hugging Face Hub (creating the repo if needed, with the token of
    `hf auth login` or HF_TOKEN); the repo's URL. A hub that cannot be reached is one line, the export kept."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        url = api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=str(out_dir), repo_id=repo, commit_message="east export")
    except Exception as err:  # offline, no token, refused: the export itself is done
        why = (str(err).strip().splitlines() or [""])[0].rstrip(".")
        raise EnvironmentFault(f"--push-to-hub {repo}: {type(err).__name__}: {why}; the export is in {out_dir}: "
                               f"push it later with `hf upload {repo} {out_dir}`") from err
    return str(url)


# --- the data ----------------------------------------------------------------------------------------------------
def trl_table(rows: pa.Table, loss: str, experiment: str, with_uncertainty: bool) -> pa.Table:
    """The store's training rows in TRL's columns for `loss` (TRL_COLUMNS), then east's (EAST_COLUMNS; the
    baselines' `uncertainty` too)."""
    text = {"prompt": rows["prompt"], "completion": rows["response"], "chosen": rows["response"],
            "rejected": rows["rejected"], "label": rows["label"].cast(pa.bool_())}
    east = {"weight": rows["weight"], "entropy": rows["entropy"], "problem_id": rows["problem_id"],
            "round": rows["round"].cast(pa.int32()), "experiment": pa.array([experiment] * rows.num_rows, pa.string())}
    columns = {**{c: text[c] for c in TRL_COLUMNS[loss]}, **east}
    if with_uncertainty:
        columns["uncertainty"] = rows["uncertainty"]
    return pa.table(columns)


def training_rows(store: Store, ref: RoundRef, accumulated: bool = False) -> pa.Table:
    """The rows round `ref.round` kept (with `accumulated`, every row it trained on: earlier rounds' too when the
    experiment accumulates), in TRL's columns."""
    if ref.round == 0:
        raise UserError(f"{ref.experiment}:0 is the base model: it trained on nothing; export a round from 1 to "
                        f"{max(ref.weight_keys, default=1)}")
    mine = {ref.round: ref.weight_keys[ref.round]}
    rows = store.export_training_rows(ref.weight_keys if accumulated and ref.config["train"].get("accumulate")
                                      else mine)
    if rows is None:
        raise UserError(f"{ref.experiment}:{ref.round} has no training rows in {store.location}")
    return trl_table(rows, ref.loss, ref.experiment, ref.config["weighting"]["strategy"] != "entropy")


def _dataset_card(ref: RoundRef, table: pa.Table, accumulated: bool) -> str:
    rounds = sorted(set(table["round"].to_pylist()))
    which = (f"every row round {ref.round} trained on (rounds {', '.join(map(str, rounds))})" if accumulated else
             f"the rows round {ref.round} kept (with train.accumulate it also trained on earlier rounds': "
             "`--accumulated` exports those too)")
    uncertainty = (", and `uncertainty`, what the baseline strategy weighed" if "uncertainty" in table.column_names
                   else "")
    return f"""---
tags:
- east
- self-training
configs:
- config_name: default
  data_files: data.parquet
---

# {ref.experiment}, round {ref.round}: training rows

{table.num_rows} rows: {which}. The loss was `{ref.loss}`; TRL's columns for it: {', '.join(TRL_COLUMNS[ref.loss])}.
east's columns: `weight` (each row's loss was multiplied by it; mean 1 over a round's rows), `entropy` (the
question's answer entropy, bits), `problem_id`, `round`, `experiment`{uncertainty}.

`data.parquet` holds the rows; `dataset/` is the same, as `datasets.Dataset.save_to_disk` writes it
(`datasets.load_from_disk`). The model: `east export model {ref.experiment}:{ref.round} DIR`.
"""


def export_data(store: Store, ref: RoundRef, out_dir: Path, accumulated: bool = False,
                overwrite: bool = False) -> datasets.Dataset:
    """The round's training rows as a `datasets` dataset (out_dir/dataset, `save_to_disk`) and Parquet
    (out_dir/data.parquet), with a dataset card; the dataset, read back from out_dir."""
    import datasets
    import pyarrow.parquet as pq

    _check_out(out_dir, overwrite)
    table = training_rows(store, ref, accumulated)
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a bar per shard saved: noise in a one-line command
    try:
        with atomic_dir(out_dir) as tmp:
            pq.write_table(table, tmp / "data.parquet")
            datasets.Dataset(table).save_to_disk(str(tmp / "dataset"))
            (tmp / "README.md").write_text(_dataset_card(ref, table, accumulated))
            _readable(tmp)
    finally:
        if bars:
            datasets.enable_progress_bars()
    return datasets.load_from_disk(str(out_dir / "dataset"))
