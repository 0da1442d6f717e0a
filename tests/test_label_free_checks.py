"""What stops a label-free round before training, and with which diagnosis: a pool in which no response had an
extractable answer is its own error (the prompt or the token budget failed), not collapse, though its entropy
is 0 as a collapsed pool's is. The gate is the training step's check: it refuses before anything is marked or
trained."""

import pytest

from east_tasks import steps
from east_tasks.config import load_config
from east_tasks.engines.generation import release_generator
from east_tasks.errors import UserError
from east_tasks.paths import BACKBONE_DIR
from east_tasks.store import Store


def _label_free_pool(tmp_path, style: str, collapse_entropy: float) -> tuple:
    """A real pool round of the backbone, label-free: 6 questions, 2 samples each, sampled by transformers."""
    cfg = load_config("tiny-test", data_dir=tmp_path, backend={"engine": "hf"},
                      data={"pool_size": 6, "validation_size": 0, "test_size": 2, "answer_style": style},
                      sampling={"n": 2, "max_tokens": 32},
                      weighting={"labels": "majority", "collapse_entropy": collapse_entropy})
    model = steps.model_ref(BACKBONE_DIR)
    dataset_key = steps.prepare_data(cfg).key
    gen_key = steps.generate(cfg, model, dataset_key, "pool", steps.pool_spec(cfg), seed=1, step="gen").key
    release_generator()
    return cfg, model, steps.select_and_weight(cfg, gen_key, dataset_key, model).key


def _refused(cfg, model, weight_key: str) -> UserError:
    """The round's training, refused by its gate: no step status for it, no checkpoint."""
    with pytest.raises(UserError) as err:
        steps.train(cfg, model, weight_key, 1)
    with Store(cfg.store_path) as store:
        assert store.execute("SELECT count(*) FROM step_status WHERE step = 'train'") == [(0,)]
    assert not cfg.checkpoint_dir.exists() or not any(cfg.checkpoint_dir.iterdir())
    return err.value


def test_a_pool_without_answers_is_diagnosed_as_such_not_as_collapse(tmp_path) -> None:
    # the backbone ends its responses "#### N", which the math style does not read: it extracts \boxed{}
    cfg, model, weight_key = _label_free_pool(tmp_path, "math", collapse_entropy=0.05)
    with Store(cfg.store_path) as store:
        assert store.pool_answers(weight_key) == (12, 0)
        assert store.label_free_state(weight_key, cfg.experiment, 1)[0] == 0.0  # what read as collapse
    assert str(_refused(cfg, model, weight_key)) == (
        "tiny-test round 1: no response had an extractable answer (answer style 'math'): 0 of the pool's 12 "
        "responses. The style extracts the final answer in \\boxed{}: check that the prompt asks for that format "
        "(data.prompt), and raise sampling.max_tokens (now 32) if responses are cut off before it. Not training "
        "on this pool")


def test_a_pool_with_answers_is_still_checked_for_collapse(tmp_path) -> None:
    cfg, model, weight_key = _label_free_pool(tmp_path, "gsm8k", collapse_entropy=10.0)  # every pool "collapsed"
    with Store(cfg.store_path) as store:
        responses, answered = store.pool_answers(weight_key)
    assert responses == 12 and answered > 0
    assert "round 1: label-free self-training has collapsed: the pool's mean answer" in str(
        _refused(cfg, model, weight_key))
