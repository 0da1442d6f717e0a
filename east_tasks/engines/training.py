"""Weighted fine-tuning (SFT, DPO, KTO) with `transformers.Trainer`, and response scoring for references.

The authors' code multiplies weights into a loss already averaged over the batch, which blurs each
example's weight into the batch mean; here the weight meets the loss per example, before reduction
(`east_tasks.core.losses`). DPO and KTO read reference log-probs computed once per round by `score_responses`
(the parent model, before training), so no reference model is held in memory while training.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch.utils.data import Dataset, Sampler
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.utils import logging as hf_logging

from east_tasks.config import TrainConfig
from east_tasks.core.guard import non_finite
from east_tasks.core.losses import IGNORE, LOSSES, sequence_logps
from east_tasks.engines.lora import add_lora, merge_lora
from east_tasks.faults import disk_full_if_asked, pause_if_asked
from east_tasks.io import atomic_dir, hash_dir
from east_tasks.progress import Progress, on_terminal, progress


def encode_example(tokenizer: PreTrainedTokenizerBase, prompt: str, response: str, max_len: int = 256) -> dict:
    """Prompt + response + EOS, labels masked to IGNORE on the prompt: the loss is on the response only."""
    p_ids = tokenizer(prompt).input_ids
    r_ids = tokenizer(response, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    return {"input_ids": (p_ids + r_ids)[:max_len], "labels": ([IGNORE] * len(p_ids) + r_ids)[:max_len]}


Examples = pd.DataFrame | pa.Table | Path  # rows, or an Arrow IPC file of them (memory-mapped)


def example_table(examples: Examples) -> pa.Table:
    """The examples as an Arrow table; a file is memory-mapped, so a round's rows are paged in as they are read."""
    if isinstance(examples, pd.DataFrame):
        return pa.Table.from_pandas(examples, preserve_index=False)
    if isinstance(examples, pa.Table):
        return examples
    return pa.ipc.open_file(pa.memory_map(str(examples))).read_all()  # the buffers keep the mapping open


class WeightedDataset(Dataset):
    """One item per `training_examples` row, shaped for its loss, encoded when it is read (the rows stay in Arrow,
    memory-mapped from the file the train step wrote; only their token counts are kept, one per item).

    sft: the response.  kto: the response, `label` (desirable?) and `ref_logp`.
    dpo: the response as chosen, `rejected` as rejected, and both reference log-probs.
    """

    def __init__(self, examples: Examples, tokenizer: PreTrainedTokenizerBase, max_len: int, loss: str = "sft"):
        self.rows, self.tokenizer, self.max_len, self.loss = example_table(examples), tokenizer, max_len, loss
        self._lengths = np.fromiter((sum(len(seq["input_ids"]) for seq in self[i]["seqs"]) for i in range(len(self))),
                                    dtype=np.int64, count=len(self))

    def __len__(self) -> int:
        return self.rows.num_rows

    def num_tokens(self) -> int:
        """Tokens one epoch feeds the model (prompt and response, every sequence of every item)."""
        return int(self._lengths.sum())

    def lengths(self) -> list[int]:
        """Each item's tokens (all its sequences): what `train.group_by_length` groups batches by."""
        return self._lengths.tolist()

    def __getitem__(self, i: int) -> dict:
        ex = self.rows.slice(i, 1).to_pylist()[0]
        item = {"seqs": [encode_example(self.tokenizer, ex["prompt"], ex["response"], self.max_len)],
                "weight": float(ex["weight"])}
        if self.loss == "dpo":
            item["seqs"].append(encode_example(self.tokenizer, ex["prompt"], ex["rejected"], self.max_len))
            item["ref_logps"] = [ex["ref_logp"], ex["ref_rejected_logp"]]
        elif self.loss == "kto":
            item["ref_logps"], item["desirable"] = [ex["ref_logp"]], bool(ex["label"])
        return item


def pad(seqs: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pads encoded sequences into input_ids / attention_mask / labels."""
    width = max(len(s["input_ids"]) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        n = len(s["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(s["input_ids"]), torch.tensor(s["labels"]), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def collate(pad_id: int) -> Callable[[list[dict]], dict[str, torch.Tensor]]:
    """A batch of B items; DPO's chosen rows come first, then the B rejected rows, in one forward pass."""

    def _collate(batch: list[dict]) -> dict[str, torch.Tensor]:
        n_seqs = len(batch[0]["seqs"])
        out = pad([b["seqs"][j] for j in range(n_seqs) for b in batch], pad_id)
        out["weights"] = torch.tensor([b["weight"] for b in batch], dtype=torch.float32)
        if "ref_logps" in batch[0]:
            out["ref_logps"] = torch.tensor([b["ref_logps"][j] for j in range(n_seqs) for b in batch])
        if "desirable" in batch[0]:
            out["desirable"] = torch.tensor([b["desirable"] for b in batch])
        return out

    return _collate


class LengthGroupedBatches(Sampler[int]):
    """An order of the items whose batches hold items of similar length (`train.group_by_length`), so little of a
    batch is padding: each epoch the items are shuffled, cut into windows of `window` batches, each window sorted by
    length (longest first) and cut into batches; the full batches are then shuffled, a last partial one kept last
    (the DataLoader cuts the order into consecutive batches).

    transformers' `LengthGroupedSampler` sorts windows of at most n / (4 * batch) batches instead, and keeps them in
    order: on a round of a few hundred rows that leaves most of the padding."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, window: int = 50):
        self.lengths, self.batch_size, self.window = lengths, batch_size, window
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        span = self.window * self.batch_size
        batches = []
        for start in range(0, len(order), span):
            window = sorted(order[start:start + span], key=lambda i: -self.lengths[i])
            batches += [window[i:i + self.batch_size] for i in range(0, len(window), self.batch_size)]
        partial = [batches.pop()] if batches and len(batches[-1]) < self.batch_size else []
        shuffled = [batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()]
        return iter([i for batch in shuffled + partial for i in batch])


class NonFiniteTraining(ArithmeticError):
    """The loss or the gradient norm of an optimizer step is NaN or infinite: the weights after it are garbage, and
    training on would only hide it (transformers' Trainer replaces a NaN loss in its log by the running mean)."""

    def __init__(self, what: str, value: float, step: int, steps: int):
        super().__init__(f"the {what} became {value} at optimizer step {step} of {steps}")
        self.what, self.value, self.step, self.steps = what, value, step, steps


class WeightedTrainer(Trainer):
    """`transformers.Trainer` whose loss is the weighted SFT, DPO or KTO loss, and which stops at the first
    non-finite loss or gradient norm (`NonFiniteTraining`); with `group_by_length`, batches of items of similar
    length (`LengthGroupedBatches`); everything else is stock."""

    def __init__(self, *args, loss: str = "sft", beta: float = 0.1, group_by_length: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_type, self.beta, self.group_by_length = loss, beta, group_by_length

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> torch.utils.data.Sampler | None:
        if not self.group_by_length:
            return super()._get_train_sampler(train_dataset)
        dataset = self.train_dataset if train_dataset is None else train_dataset
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return LengthGroupedBatches(dataset.lengths(), self.args.train_batch_size, seed)

    def _stop_if_non_finite(self, what: str, value: torch.Tensor | float | None) -> None:
        if value is not None and non_finite(float(value)):
            raise NonFiniteTraining(what, float(value), self.state.global_step + 1, self.state.max_steps)

    def training_step(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor],
                      num_items_in_batch: torch.Tensor | None = None) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)  # forward and backward
        self._stop_if_non_finite("loss", loss.detach())
        return loss

    def _get_grad_norm(self, model: torch.nn.Module, grad_norm: torch.Tensor | float | None = None) -> float | None:
        """The step's gradient norm before clipping (clipping an infinite norm zeroes the gradients, so the
        clipped ones look fine); the Trainer's one place for it, checked before the optimizer step."""
        norm = super()._get_grad_norm(model, grad_norm)
        self._stop_if_non_finite("gradient norm", norm)
        return norm

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | None = None) -> torch.Tensor | tuple:
        weights, labels = inputs.pop("weights"), inputs.pop("labels")
        extras = {k: inputs.pop(k) for k in ("ref_logps", "desirable") if k in inputs}
        outputs = model(**inputs)
        loss = LOSSES.get(self.loss_type).fn(outputs.logits, labels, weights, extras, self.beta)
        return (loss, outputs) if return_outputs else loss


class PlainProgress(TrainerCallback):
    """Off a terminal, the Trainer's progress as a line at every tenth of its steps with the last logged loss, in
    place of its bar and of the dict it prints at every logging step (`east_tasks.progress`)."""

    def __init__(self) -> None:
        self.meter: Progress | None = None
        self.loss: float | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        self.meter = Progress("train", state.max_steps, "step", enabled=state.is_local_process_zero)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: dict | None = None,
               **kwargs) -> None:
        self.loss = (logs or {}).get("loss", self.loss)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if self.meter is not None:
            self.meter.update(1, **({} if self.loss is None else {"loss": f"{self.loss:.4f}"}))


def _load(model_path: str, trust_remote_code: bool) -> tuple[PreTrainedTokenizerBase, torch.nn.Module]:
    if not on_terminal():  # transformers 5 draws a bar while it loads weights
        hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, trust_remote_code=trust_remote_code)
    return tokenizer, model


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@torch.no_grad()
def score_responses(model_path: str, prompts: list[str], responses: list[str], max_len: int = 256,
                    batch_size: int = 32, bf16: bool = True, trust_remote_code: bool = False) -> np.ndarray:
    """[n, 2] array of (summed log-prob, token count) of each response (+EOS) given its prompt.

    Encoded and reduced exactly as in training, so DPO/KTO start from a log-ratio of ~0.
    """
    tokenizer, model = _load(model_path, trust_remote_code)
    model.to(_device()).eval()
    out = np.zeros((len(prompts), 2))
    for start in progress(range(0, len(prompts), batch_size), desc="score responses", unit="batch"):
        seqs = [encode_example(tokenizer, p, r, max_len)
                for p, r in zip(prompts[start:start + batch_size], responses[start:start + batch_size], strict=True)]
        batch = {k: v.to(model.device) for k, v in pad(seqs, tokenizer.pad_token_id).items()}
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logp, n = sequence_logps(logits, batch["labels"])
        out[start:start + len(seqs)] = torch.stack([logp, n.float()], 1).cpu().numpy()
    return out


def weighted_trainer(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, dataset: WeightedDataset,
                     cfg: TrainConfig, output_dir: str, tracking: dict | None = None) -> WeightedTrainer:
    """The Trainer `train_weighted` runs (`bench/trainer_vs_trl.py` times it): its arguments from `cfg`, east's
    collator and loss, and off a terminal `PlainProgress` in place of the dict printed at every logging step."""
    # Under torchrun each of the WORLD_SIZE processes takes an equal share of the global batch_size; DDP averages
    # their gradients, and each share's loss is a mean over its examples, so the step is the one-process step.
    world = int(os.environ.get("WORLD_SIZE", "1"))
    args = TrainingArguments(
        output_dir=output_dir,
        learning_rate=cfg.lr,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size // world,
        ddp_backend=("nccl" if torch.cuda.is_available() else "gloo") if world > 1 else None,
        weight_decay=cfg.weight_decay,
        warmup_steps=math.ceil(cfg.warmup_ratio * cfg.epochs * math.ceil(len(dataset) / cfg.batch_size)),
        lr_scheduler_type="cosine",
        max_grad_norm=cfg.max_grad_norm,
        bf16=cfg.bf16,  # on CPU this is autocast over fp32 weights
        use_cpu=not torch.cuda.is_available(),
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=10,
        save_strategy="no",
        **(tracking or {"report_to": []}),
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=not on_terminal(),
        **({"fsdp": cfg.fsdp} if cfg.fsdp else {}),
        **({"deepspeed": str(cfg.deepspeed)} if cfg.deepspeed else {}),
    )
    trainer = WeightedTrainer(model=model, args=args, train_dataset=dataset,
                              data_collator=collate(tokenizer.pad_token_id), loss=cfg.loss, beta=cfg.beta,
                              group_by_length=cfg.group_by_length)
    if args.disable_tqdm:
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(PlainProgress())
    return trainer


def train_weighted(base_model: str, examples: Examples, cfg: TrainConfig, out_dir: Path,
                   max_len: int = 256, trust_remote_code: bool = False, tracking: dict | None = None) -> dict:
    """Fine-tunes `base_model` on weighted examples with `cfg.loss`, writes `out_dir` atomically.

    `tracking`: `report_to` / `run_name` for transformers' tracker callbacks (east_tasks.report.tracking)."""
    tokenizer, model = _load(base_model, trust_remote_code)
    model = add_lora(model, cfg.lora)
    dataset = WeightedDataset(examples, tokenizer, max_len, cfg.loss)
    out_dir = Path(out_dir)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    with tempfile.TemporaryDirectory() as scratch:
        result = weighted_trainer(model, tokenizer, dataset, cfg, scratch, tracking).train()
    loss = float(result.training_loss)
    if world > 1:  # each process logged its own share's mean: the mean of equal shares is the batch's
        total = torch.tensor(loss, dtype=torch.float64)
        torch.distributed.all_reduce(total)
        loss = total.item() / world
    summary = {"train_loss": loss, "steps": int(result.global_step), "n_examples": len(dataset),
               "tokens_trained": round(dataset.num_tokens() * cfg.epochs)}
    if int(os.environ.get("RANK", "0")) != 0:  # one process writes the checkpoint
        return summary
    with atomic_dir(out_dir, keep_equal=True) as tmp:
        merge_lora(model).save_pretrained(tmp, safe_serialization=True)
        pause_if_asked("checkpoint-write")  # weights written, tokenizer not yet, nothing renamed into place
        disk_full_if_asked("checkpoint-write", tmp / "tokenizer.json")
        tokenizer.save_pretrained(tmp)
        return {**summary, "model_hash": hash_dir(tmp)}
