"""The two generation backends behind one interface: same greedy answers, seeded sampling reproducible; new
weights synced into a running vLLM engine exactly."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

from east_tasks import steps
from east_tasks.config import BackendConfig, load_config
from east_tasks.data.arith import make_split
from east_tasks.data.prompts import format_prompt
from east_tasks.data.sources import load_splits
from east_tasks.engines.generation import SampleSpec, get_generator, release_generator
from east_tasks.paths import BACKBONE_DIR

PROMPTS = [format_prompt(p.question) for p in make_split("test", 32, seed=11)]
GREEDY = SampleSpec(n=1, temperature=0.0, top_p=1.0, max_tokens=64)
SAMPLED = SampleSpec(n=4, temperature=0.8, top_p=1.0, max_tokens=64)


def _run(backend: str) -> tuple[list, list, list, list]:
    gen = get_generator(str(BACKBONE_DIR), BackendConfig(engine=backend))
    seeds = list(range(len(PROMPTS)))
    greedy = gen.generate(PROMPTS, seeds, GREEDY)
    sampled = gen.generate(PROMPTS[:8], seeds[:8], SAMPLED)
    # The same prompts with the same seeds, in a different batch: identical samples per prompt.
    resampled = gen.generate(PROMPTS[:8][::-1], seeds[:8][::-1], SAMPLED)[::-1]
    stopped = gen.generate(PROMPTS[:8], seeds[:8], replace(GREEDY, stop=(" = ",)))
    release_generator()
    return greedy, sampled, resampled, stopped


def test_vllm_and_hf_agree_greedily_and_sample_reproducibly() -> None:
    vllm_greedy, vllm_sampled, vllm_resampled, vllm_stopped = _run("vllm")
    hf_greedy, _, _, hf_stopped = _run("hf")
    assert [c[0].text for c in vllm_greedy] == [c[0].text for c in hf_greedy]
    # a stop string ends the text before it, the same way in both backends
    assert [c[0].text for c in vllm_stopped] == [c[0].text for c in hf_stopped]
    assert all(g[0].text.startswith(s[0].text + " = ") for g, s in zip(vllm_greedy, vllm_stopped, strict=False))
    assert all(c[0].text.strip().split("####")[-1].strip().isdigit() for c in vllm_greedy[:4])
    assert vllm_sampled == vllm_resampled  # per-prompt seeds: independent of batch order
    assert all(len(c) == 4 for c in vllm_sampled)
    assert any(len({c.text for c in samples}) > 1 for samples in vllm_sampled)  # sampling actually varies


def _perturbed_checkpoint(out: Path) -> Path:
    """Another checkpoint of the backbone (every weight moved a little, the tied embedding too), as training
    makes; saved the way `train_weighted` saves."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(BACKBONE_DIR)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05 * p.std().clamp_min(0.01))
    model.config.use_cache = False  # as after training: a field that must not block a sync
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(BACKBONE_DIR).save_pretrained(out)
    return out


def test_weight_sync_into_a_running_engine_equals_a_fresh_engine(tmp_path) -> None:
    """The running engine takes a new checkpoint's weights (no restart), and greedy output on the whole test
    split of the embedded default is then exactly a freshly started engine's; a checkpoint the engine cannot
    take exactly (another generation config) restarts it instead."""
    cfg = load_config("tiny")
    prompter = steps.prompter_for(cfg, str(BACKBONE_DIR))
    test = load_splits(cfg.data)[1]["test"]
    prompts, seeds = [prompter(q) for q in test.question], list(range(len(test)))
    greedy = replace(GREEDY, stop=prompter.stop)
    ckpt = _perturbed_checkpoint(tmp_path / "ckpt")
    backend = BackendConfig()

    engine = get_generator(str(BACKBONE_DIR), backend)
    before = engine.generate(prompts, seeds, greedy)  # fills the prefix cache with the old weights' KV blocks
    assert get_generator(str(ckpt), backend) is engine  # synced, not restarted
    synced = engine.generate(prompts, seeds, greedy)
    sampled = engine.generate(prompts[:64], seeds[:64], SAMPLED)

    other = tmp_path / "other-generation-config"
    shutil.copytree(ckpt, other)
    (other / "generation_config.json").write_text(json.dumps({"repetition_penalty": 1.3}))
    assert not engine.load_weights(str(other))  # refused: the engine keeps its weights
    assert engine.generate(prompts[:64], seeds[:64], SAMPLED) == sampled
    release_generator()

    fresh_engine = get_generator(str(ckpt), backend)
    fresh = fresh_engine.generate(prompts, seeds, greedy)
    fresh_sampled = fresh_engine.generate(prompts[:64], seeds[:64], SAMPLED)
    assert get_generator(str(other), backend) is not fresh_engine  # restarted for the incompatible checkpoint
    release_generator()

    texts = [[c[0].text for c in out] for out in (before, synced, fresh)]
    assert len(texts[1]) == 1500
    assert sum(a != b for a, b in zip(texts[0], texts[2], strict=True)) > 50  # the new weights change output
    assert texts[1] == texts[2]
    assert sampled == fresh_sampled
