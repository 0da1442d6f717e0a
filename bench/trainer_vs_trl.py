"""east's weighted SFT trainer against TRL's `SFTTrainer`, side by side in one run, on the same rows.

    .venv/bin/python bench/trainer_vs_trl.py --rows DIR [--max-rows 320] [--epochs 1] [--batch-size 16]
    .venv/bin/python bench/trainer_vs_trl.py --experiment NAME [--round R] [--data-dir data] [...]

The rows are those `east export data --accumulated` writes (`--rows DIR`: its data.parquet), or the same rows read
from a store (`--data-dir`, `--experiment`, `--round`: every row the round trained on), the first `--max-rows` of
them. Both trainers start from the committed backbone (`east_tasks.paths.BACKBONE_DIR`) in float32 on the CPU (or
the GPU where there is one), with the same batch size, epochs, learning rate and schedule, seed, sequence cap
(east's `max_len`, TRL's `max_length`) and the loss on the completion only:

- east: `east_tasks.engines.training.weighted_trainer`, the Trainer `train_weighted` runs (rows weighted);
- trl: `trl.SFTTrainer` on the prompt-completion columns, with `bf16=False` (TRL's SFTConfig defaults it on) and
  otherwise TRL's defaults, gradient checkpointing on among them; the last line compares east with it;
- trl-nogc: the same without gradient checkpointing (east trains without it): the like-for-like computation.

They alternate, east, trl, trl-nogc, east, ... (`--passes 2`; with `--group-by-length`, east with
`train.group_by_length` after east in each pass): the first pass warms the process (imports, kernels, the
allocator, `datasets`' first map), and each trainer's fastest later pass is reported, the one other work on a shared
machine slowed least; every pass is printed as it ends. Timed: `trainer.train()`, wall clock, and this process's CPU
time over it; the trainer's construction (TRL tokenizes its whole dataset there, east counts its tokens) is shown
apart. Padding: padded positions over all positions of the batches the collator made, counted as they are made;
tokens/s counts the real tokens. The last line is `east_samples_s=E trl_samples_s=T ratio=R` (R = E / T).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from benchmarks import record
from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainingArguments
from transformers.utils import logging as hf_logging

from east_tasks.config import StoreConfig, TrainConfig
from east_tasks.engines.training import WeightedDataset, weighted_trainer
from east_tasks.paths import BACKBONE_DIR, DEFAULT_DATA_DIR

MAX_LEN = 256  # train_weighted's max_len: the sequence cap of both trainers


class CountingCollator:
    """A trainer's collator, counting the real and the padded positions of every batch it makes."""

    def __init__(self, collate):
        self.collate, self.real, self.positions = collate, 0, 0

    def __call__(self, batch):
        out = self.collate(batch)
        mask = out["attention_mask"]
        self.real += int(mask.sum())
        self.positions += mask.numel()
        return out


@dataclass
class Measure:
    trainer: str
    pass_no: int
    rows: int
    steps: int
    setup_s: float
    train_s: float
    cpu_s: float  # this process's CPU time over train(): what other work on the machine does not lengthen
    real_tokens: int
    positions: int
    loss: float

    @property
    def samples_s(self) -> float:
        return self.rows / self.train_s

    @property
    def samples_cpu_s(self) -> float:
        return self.rows / self.cpu_s

    @property
    def tokens_s(self) -> float:
        return self.real_tokens / self.train_s

    @property
    def padding(self) -> float:
        return 1 - self.real_tokens / self.positions


def load_rows(args: argparse.Namespace) -> pa.Table:
    """prompt, completion, weight: the exported rows (data.parquet) or the store's, the first --max-rows."""
    if args.rows is not None:
        table = pq.read_table(Path(args.rows) / "data.parquet")
    else:
        from east_tasks.report.export import find_round, training_rows
        from east_tasks.store import connect_existing

        with connect_existing(StoreConfig(), args.data_dir) as store:
            table = training_rows(store, find_round(store, args.experiment, args.round), accumulated=True)
    missing = {"prompt", "completion", "weight"} - set(table.column_names)
    if missing:
        sys.exit(f"{args.rows or args.data_dir}: no column {', '.join(sorted(missing))}: SFT rows as "
                 "`east export data --accumulated` writes them are needed")
    return table.select(["prompt", "completion", "weight"]).slice(0, args.max_rows)


def load_model() -> tuple:
    tokenizer = AutoTokenizer.from_pretrained(BACKBONE_DIR)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, AutoModelForCausalLM.from_pretrained(BACKBONE_DIR, dtype=torch.float32)


def timed(name: str, pass_no: int, trainer, collator: CountingCollator, setup_s: float, rows: int) -> Measure:
    trainer.data_collator = collator
    t0, c0 = time.perf_counter(), time.process_time()
    result = trainer.train()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return Measure(name, pass_no, rows, int(result.global_step), setup_s, seconds, cpu, collator.real,
                   collator.positions, float(result.training_loss))


def run_east(table: pa.Table, cfg: TrainConfig, pass_no: int) -> tuple[Measure, TrainingArguments]:
    """east's measure, and the arguments its trainer ran with (TRL's are copied from them)."""
    name = "east-glen" if cfg.group_by_length else "east"
    tokenizer, model = load_model()
    t0 = time.perf_counter()
    examples = table.rename_columns(["prompt", "response", "weight"])
    dataset = WeightedDataset(examples, tokenizer, MAX_LEN, "sft")
    with tempfile.TemporaryDirectory() as scratch:
        trainer = weighted_trainer(model, tokenizer, dataset, cfg, scratch)
        setup_s = time.perf_counter() - t0
        return timed(name, pass_no, trainer, CountingCollator(trainer.data_collator), setup_s,
                     round(len(dataset) * cfg.epochs)), trainer.args


def run_trl(table: pa.Table, cfg: TrainConfig, east_args: TrainingArguments, pass_no: int,
            checkpointing: bool) -> Measure:
    """TRL's SFTTrainer with east's arguments where TRL's defaults differ, and `gradient_checkpointing` as given
    (TRL's default: on)."""
    import datasets
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tokenizer, model = load_model()
    t0 = time.perf_counter()
    datasets.disable_progress_bars()  # a bar per map of its dataset preparation
    dataset = datasets.Dataset(table.select(["prompt", "completion"]))
    with tempfile.TemporaryDirectory() as scratch:
        # east's TrainingArguments, field by field, where TRL's defaults differ
        same = ("learning_rate", "num_train_epochs", "per_device_train_batch_size", "weight_decay", "warmup_steps",
                "lr_scheduler_type", "max_grad_norm", "use_cpu", "seed", "data_seed", "logging_steps",
                "save_strategy", "dataloader_num_workers", "disable_tqdm")
        config = SFTConfig(output_dir=scratch, report_to=[], bf16=cfg.bf16, gradient_checkpointing=checkpointing,
                           max_length=MAX_LEN, completion_only_loss=True,
                           **{name: getattr(east_args, name) for name in same})
        trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
        if config.disable_tqdm:  # as east does off a terminal: no dict printed at every logging step
            trainer.remove_callback(PrinterCallback)
        setup_s = time.perf_counter() - t0
        collator = trainer.data_collator
        if not isinstance(collator, DataCollatorForLanguageModeling) or collator.padding_free:
            sys.exit(f"TRL's collator is {collator!r}: the padding count expects its padded language-modeling one")
        rows = len(trainer.train_dataset)  # less any row its truncation left without a completion token
        name = "trl" if checkpointing else "trl-nogc"
        return timed(name, pass_no, trainer, CountingCollator(collator), setup_s, round(rows * cfg.epochs))


def table_lines(measures: list[Measure]) -> list[str]:
    head = f"{'trainer':<9} {'pass':>4} {'steps':>5} {'setup s':>7} {'train s':>7} {'CPU s':>6} {'samples/s':>9} " \
           f"{'per CPU s':>9} {'tokens/s':>8} {'padding':>7} {'loss':>7}"
    return [head, *(f"{m.trainer:<9} {m.pass_no:>4} {m.steps:>5} {m.setup_s:>7.1f} {m.train_s:>7.1f} {m.cpu_s:>6.1f} "
                    f"{m.samples_s:>9.1f} {m.samples_cpu_s:>9.1f} {m.tokens_s:>8.0f} {m.padding:>7.1%} "
                    f"{m.loss:>7.4f}" for m in measures)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=Path, help="a directory `east export data --accumulated` wrote")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="a store's data dir (with "
                        "--experiment; default: %(default)s)")
    parser.add_argument("--experiment", help="the experiment whose round's training rows to read from the store")
    parser.add_argument("--round", type=int, help="its round (default: the last recorded)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-rows", type=int, default=320, help="the first N rows (default: %(default)s)")
    parser.add_argument("--group-by-length", action="store_true", help="also east with train.group_by_length "
                        "(east-glen), after east in every pass")
    parser.add_argument("--passes", type=int, default=2, help="east, trl alternated this many times; the first "
                        "warms, the fastest later pass of each is reported (default: %(default)s)")
    parser.add_argument("--threads", type=int, help="torch's threads (default: torch's own choice)")
    args = parser.parse_args()
    if (args.rows is None) == (args.experiment is None):
        parser.error("give --rows DIR (an exported data dir) or --experiment NAME (with --data-dir, --round)")
    if args.threads:
        torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    table = load_rows(args)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, bf16=False, seed=0)
    measures = []
    print(table_lines([])[0], flush=True)
    for pass_no in range(1, args.passes + 1):
        east, east_args = run_east(table, cfg, pass_no)
        runs = [east]
        if args.group_by_length:
            runs.append(run_east(table, cfg.model_copy(update={"group_by_length": True}), pass_no)[0])
        runs += [run_trl(table, cfg, east_args, pass_no, checkpointing) for checkpointing in (True, False)]
        for measure in runs:
            print(table_lines([measure])[1], flush=True)
            measures.append(measure)
    timed_passes = [m for m in measures if m.pass_no > 1] or measures  # pass 1 warms, where there are more
    best = {}  # each trainer's fastest pass: the one other work on the machine slowed least
    for m in timed_passes:
        if m.trainer not in best or m.samples_s > best[m.trainer].samples_s:
            best[m.trainer] = m
    east, trl, nogc = best["east"], best["trl"], best["trl-nogc"]
    ratio = east.samples_s / trl.samples_s
    grouped = best.get("east-glen")
    lines = [f"{table.num_rows} rows, batch {args.batch_size}, {args.epochs:g} epoch(s), float32, "
             f"{torch.get_num_threads()} threads, {'cuda' if torch.cuda.is_available() else 'cpu'}; "
             f"{' '.join(best)} alternated {args.passes}x, the fastest pass of each after the first reported",
             *table_lines(list(best.values())),
             f"east / trl samples/s: {ratio:.2f}x (target 1.5x), per CPU second: "
             f"{east.samples_cpu_s / trl.samples_cpu_s:.2f}x; padding east {east.padding:.1%}, trl {trl.padding:.1%}",
             f"east / trl without gradient checkpointing: {east.samples_s / nogc.samples_s:.2f}x, per CPU second: "
             f"{east.samples_cpu_s / nogc.samples_cpu_s:.2f}x",
             *([f"east with train.group_by_length / trl: {grouped.samples_s / trl.samples_s:.2f}x, / trl-nogc: "
                f"{grouped.samples_s / nogc.samples_s:.2f}x, / east: {grouped.samples_s / east.samples_s:.2f}x (per "
                f"CPU second {grouped.samples_cpu_s / east.samples_cpu_s:.2f}x); padding {grouped.padding:.1%}"]
               if grouped else []),
             f"east_samples_s={east.samples_s:.1f} trl_samples_s={trl.samples_s:.1f} ratio={ratio:.2f}"]
    record("trainer-vs-trl", "Weighted SFT: east's trainer vs TRL's SFTTrainer", lines)


if __name__ == "__main__":
    main()
