"""Weighted DPO and KTO on the real backbone, with reference log-probs from `score_responses`."""

import numpy as np
import pandas as pd
import pytest

from east_tasks.config import TrainConfig
from east_tasks.data.arith import make_split
from east_tasks.data.prompts import format_completion, format_prompt
from east_tasks.engines.training import score_responses, train_weighted
from east_tasks.paths import BACKBONE_DIR

PROBLEMS = make_split("pool", 8, seed=99, tiers=(4,))  # a tier the backbone half solves
PROMPTS = [format_prompt(p.question) for p in PROBLEMS]
CORRECT = [format_completion(p.solution) for p in PROBLEMS]
WRONG = [format_completion(p.solution.replace(f"#### {p.answer}", f"#### {int(p.answer) + 1}")) for p in PROBLEMS]


def _logps(model_dir, responses: list[str]) -> np.ndarray:
    return score_responses(str(model_dir), PROMPTS, responses)[:, 0]


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return {"correct": _logps(BACKBONE_DIR, CORRECT), "wrong": _logps(BACKBONE_DIR, WRONG)}


def test_scores_match_the_training_encoding(ref, tiny_tokenizer) -> None:
    scores = score_responses(str(BACKBONE_DIR), PROMPTS[:2], CORRECT[:2], bf16=False)
    n_tokens = [len(tiny_tokenizer(r, add_special_tokens=False).input_ids) + 1 for r in CORRECT[:2]]  # + EOS
    assert scores[:, 1].tolist() == n_tokens
    assert (scores[:, 0] < 0).all() and scores[:, 0] == pytest.approx(ref["correct"][:2], abs=0.05 * n_tokens[0])


def test_weighted_dpo_moves_heavy_pairs_more(ref, tmp_path) -> None:
    # The wrong answer is the *chosen* one, so the change is visible against a backbone that prefers the truth.
    # The pairs share their pattern (answer + 1), so light pairs move too; the weighting shows against the same
    # training with equal weights: heavy pairs gain margin, light ones lose it.
    def margins(weights: list[float], out: str) -> tuple[np.ndarray, dict]:
        examples = pd.DataFrame({"prompt": PROMPTS, "response": WRONG, "rejected": CORRECT,
                                 "ref_logp": ref["wrong"], "ref_rejected_logp": ref["correct"], "weight": weights})
        cfg = TrainConfig(loss="dpo", beta=0.1, lr=3e-4, epochs=3, batch_size=8, warmup_ratio=0.0)
        summary = train_weighted(str(BACKBONE_DIR), examples, cfg, tmp_path / out)
        chosen = _logps(tmp_path / out, WRONG) - ref["wrong"]
        return chosen - (_logps(tmp_path / out, CORRECT) - ref["correct"]), summary

    weighted, summary = margins([1.9] * 4 + [0.1] * 4, "weighted")
    equal, _ = margins([1.0] * 8, "equal")
    assert summary["steps"] == 3 and summary["train_loss"] < np.log(2)  # it starts at log 2 and falls
    assert weighted[:4].mean() > equal[:4].mean() and 0 < weighted[4:].mean() < equal[4:].mean()
    assert weighted[:4].mean() > weighted[4:].mean()


def test_kto_raises_desirable_and_lowers_undesirable(ref, tmp_path) -> None:
    examples = pd.DataFrame({"prompt": PROMPTS * 2, "response": WRONG + CORRECT, "label": [True] * 8 + [False] * 8,
                             "ref_logp": np.concatenate([ref["wrong"], ref["correct"]]), "weight": 1.0})
    cfg = TrainConfig(loss="kto", beta=0.1, lr=3e-4, epochs=3, batch_size=16, warmup_ratio=0.0)
    train_weighted(str(BACKBONE_DIR), examples, cfg, tmp_path / "kto")
    assert (_logps(tmp_path / "kto", WRONG) - ref["wrong"]).mean() > 1.0
    assert (_logps(tmp_path / "kto", CORRECT) - ref["correct"]).mean() < -1.0
