"""The committed backbone and the command that rebuilds it."""

import json
from dataclasses import asdict

from transformers import AutoModelForCausalLM, AutoTokenizer

from east_tasks.io import hash_dir
from east_tasks.models.bootstrap import BootstrapConfig, bootstrap_backbone
from east_tasks.paths import BACKBONE_DIR


def test_committed_backbone_matches_its_manifest() -> None:
    manifest = json.loads((BACKBONE_DIR / "bootstrap_manifest.json").read_text())
    assert hash_dir(BACKBONE_DIR) == manifest["model_hash"]
    assert manifest["config"] == json.loads(json.dumps(asdict(BootstrapConfig())))  # built with today's defaults
    assert manifest["final_loss"] < 0.2 < manifest["first_loss"]


def test_shortened_rebuild_is_seeded_and_loadable(tmp_path) -> None:
    cfg = BootstrapConfig(steps=6, batch_size=8, warmup_steps=2)  # bf16 autocast's backward is slow on a CPU
    first = bootstrap_backbone(tmp_path / "a", cfg, progress=False)
    second = bootstrap_backbone(tmp_path / "b", cfg, progress=False)
    assert first["model_hash"] == second["model_hash"] == hash_dir(tmp_path / "a")  # same seed, same weights
    assert first["final_loss"] < first["first_loss"]
    tok = AutoTokenizer.from_pretrained(tmp_path / "a")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    assert model.config.hidden_size // model.config.num_attention_heads == 64  # vLLM CPU needs head_dim 64
    ids = tok("Q: Tom has 3 pens.\nA: 3 + 45 = 48. #### 48").input_ids
    assert ids[0] == tok.bos_token_id and all(len(tok.decode([i]).strip()) <= 1 for i in ids if
                                              tok.decode([i]).strip().isdigit())  # one token per digit
    assert not list(tmp_path.glob(".*tmp-*"))
