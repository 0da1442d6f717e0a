"""Config files: `east run --config`, `east config show`, the config each run writes beside its results, sweep files
and the example configs in configs/."""

import shutil
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from east_tasks.config import (
    SweepGrid,
    config_yaml,
    load_config,
    load_config_file,
    load_sweep_file,
    write_config_file,
)
from east_tasks.errors import UserError
from east_tasks.io import flatten
from east_tasks.store import Store
from east_tasks.sweep import grid_points, point_config
from flows.cli import app

CONFIGS = Path(__file__).parent.parent / "configs"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _show(*args: str) -> str:
    out = CliRunner().invoke(app, ["config", "show", *args])
    assert out.exit_code == 0, out.output
    return out.output


def test_every_example_config_validates_and_mirrors_its_preset() -> None:
    files = sorted(p.name for p in CONFIGS.glob("*.yaml"))
    assert files == ["gsm8k-1b.yaml", "gsm8k-8b-lora.yaml", "math-1.5b.yaml", "sweep-a-grid.yaml", "tiny.yaml"]
    for name in ("tiny", "gsm8k-1b", "math-1.5b", "gsm8k-8b-lora"):
        assert load_config_file(CONFIGS / f"{name}.yaml") == load_config(name), name
    # what `east run --config configs/tiny.yaml` and `east run --preset tiny` resolve to, printed
    assert _show("--config", str(CONFIGS / "tiny.yaml")) == _show("--preset", "tiny")
    # the file's knobs are the ones the presets differ in, e.g. LoRA in the 8B one and MATH-500 as math's test set
    lora = load_config_file(CONFIGS / "gsm8k-8b-lora.yaml").train
    assert lora.lr == 1e-4 and lora.lora.r == 16 and lora.lora.alpha == 32.0
    assert load_config_file(CONFIGS / "math-1.5b.yaml").data.test_path == "HuggingFaceH4/MATH-500"

    spec = load_sweep_file(CONFIGS / "sweep-a-grid.yaml")
    assert (spec.name, spec.preset, spec.rounds) == ("a-grid", "tiny", 2)
    assert spec.grid == SweepGrid(a_values=[0.0, 0.5, 1.0, 2.0], seeds=[0, 1, 2])
    points = [point_config(spec.name, p, spec.preset, spec.rounds, **spec.base) for p in grid_points(spec.grid)]
    assert len(points) == 3 * 4  # per seed: vanilla and three values of a
    assert points[1].experiment == "a-grid-sft-entropy-power-a0.5-s0" and points[1].weighting.a == 0.5
    assert all(c.rounds == 2 and c.data.pool_size == 1000 and c.data.validation_size == 500 and c.train.epochs == 3
               for c in points)


def test_config_show_prints_every_field_and_round_trips(tmp_path) -> None:
    sets = ["--set", "weighting.a=1.5", "--set", "experiment=lora-a1.5", "--set", "data.path=/data/gsm8k",
            "--set", "train.deepspeed=docs/deepspeed-zero2.json", "--set", "train.launcher=torchrun"]
    shown = _show("--preset", "gsm8k-8b-lora", *sets)
    expected = load_config("gsm8k-8b-lora", weighting={"a": 1.5}, experiment="lora-a1.5", data={"path": "/data/gsm8k"},
                           train={"deepspeed": "docs/deepspeed-zero2.json", "launcher": "torchrun"})
    fields = yaml.safe_load(shown)
    assert flatten(fields).keys() == flatten(expected.model_dump()).keys()  # every field, defaults filled
    assert fields["train"]["deepspeed"] == "docs/deepspeed-zero2.json" and fields["data_dir"] == "data"  # paths
    assert fields["train"]["lora"]["target_modules"][:2] == ["q_proj", "k_proj"]  # tuples as lists
    assert fields["weighting"]["eps"] == 1e-6 and fields["train"]["lr"] == 1e-4
    again = load_config_file(_write(tmp_path / "shown.yaml", shown))
    assert again == expected and config_yaml(again) == shown
    assert _show("--config", str(tmp_path / "shown.yaml")) == shown
    # a store URL is shown as stored; one with a password is never accepted, so never shown
    lake = "ducklake:postgres:dbname=east host=db user=east"
    assert yaml.safe_load(_show("--set", f"store.url={lake}"))["store"]["url"] == lake
    out = CliRunner().invoke(app, ["config", "show", "--set", "store.url=ducklake:postgres:dbname=e password=hunter2"])
    assert out.exit_code == 2 and "hunter2" not in out.output and "PGPASSWORD" in out.output


def test_the_preset_then_the_file_then_the_command_line(tmp_path) -> None:
    exp = _write(tmp_path / "exp.yaml", "preset: gsm8k-1b\nexperiment: mine\nweighting:\n  a: 1.0\n"
                                        "train:\n  epochs: 2\n  lr: 1e-5   # YAML reads this as a string\n"
                                        "data:\n  # every line commented out: an empty section is the preset's\n")
    cfg = load_config_file(exp)
    assert (cfg.preset, cfg.experiment, cfg.base_model) == ("gsm8k-1b", "mine", "meta-llama/Llama-3.2-1B-Instruct")
    assert (cfg.weighting.a, cfg.train.epochs, cfg.train.lr, cfg.train.bf16) == (1.0, 2.0, 1e-5, True)
    assert cfg.data == load_config("gsm8k-1b").data
    over = load_config_file(exp, "tiny", train={"epochs": 1}, rounds=5)  # --preset, --set train.epochs=1, --rounds
    assert (over.preset, over.base_model, over.data.source) == ("tiny", load_config("tiny").base_model, "arith")
    assert (over.weighting.a, over.train.epochs, over.train.lr, over.rounds) == (1.0, 1.0, 1e-5, 5)
    shown = yaml.safe_load(_show("--config", str(exp), "--set", "train.epochs=1", "--set", "train.lora={\"r\": 4}"))
    assert shown["train"]["epochs"] == 1.0 and shown["train"]["lora"]["r"] == 4 and shown["weighting"]["a"] == 1.0
    # an empty file is the preset; a file without preset: is tiny's
    assert load_config_file(_write(tmp_path / "empty.yaml", "# nothing yet\n")) == load_config("tiny")
    assert load_config_file(_write(tmp_path / "a.yaml", "rounds: 1\n")) == load_config("tiny", rounds=1)


def test_bad_config_files_are_one_line_exit_2_before_anything_loads(tmp_path) -> None:
    def run(*args: str) -> str:
        out = CliRunner().invoke(app, ["run", "--data-dir", str(tmp_path / "data"), *args])
        assert out.exit_code == 2, out.output
        assert "Traceback" not in out.output and len(out.output.strip().splitlines()) == 1, out.output
        return out.output.strip()

    tiny = str(CONFIGS / "tiny.yaml")
    assert run("--config", tiny, "--set", "train.lrr=1") == (
        "invalid configuration: train.lrr: Extra inputs are not permitted")
    typo = _write(tmp_path / "typo.yaml", "preset: tiny\ntrain:\n  epochs: 1\n  lrr: 1e-5\nsampling:\n  n: 0\n")
    assert run("--config", str(typo)) == ("invalid configuration: sampling.n: Input should be greater than or "
                                          "equal to 1; train.lrr: Extra inputs are not permitted")
    assert run("--config", str(tmp_path / "nope.yaml")) == f"config file {tmp_path / 'nope.yaml'}: no such file"
    broken = _write(tmp_path / "broken.yaml", "preset: tiny\ntrain:\n  epochs: 1\n lr: [1e-5\n")  # `lr` misindented
    assert run("--config", str(broken)).startswith(f"config file {broken} line 4, column 2: invalid YAML: ")
    listed = _write(tmp_path / "list.yaml", "- preset: tiny\n")
    assert run("--config", str(listed)) == (f"config file {listed}: expected `field: value` lines at the top "
                                            "level, found a list")
    unknown = _write(tmp_path / "unknown.yaml", "preset: tiny-large\n")
    assert run("--config", str(unknown)).startswith("invalid configuration: unknown preset 'tiny-large'; allowed: ")
    assert not (tmp_path / "data").exists()  # nothing was started or written
    with pytest.raises(UserError, match="no such file"):
        load_config_file(tmp_path / "nope.yaml")
    with pytest.raises(ValidationError, match="lrr"):
        load_config_file(typo)


def test_sweep_files(tmp_path) -> None:
    sweep = _write(tmp_path / "sweep.yaml", "name: g\nrounds: 3\ngrid:\n  a_values: [0, 1]\n  seeds: [4]\n"
                                            "train: {epochs: 1, batch_size: 8}\nbase:\n  train: {epochs: 2}\n")
    spec = load_sweep_file(sweep)
    assert (spec.name, spec.preset, spec.rounds) == ("g", "tiny", 3)
    assert spec.grid == SweepGrid(a_values=[0.0, 1.0], seeds=[4])  # the rest of the grid: SweepGrid's defaults
    assert spec.base == {"train": {"epochs": 2, "batch_size": 8}}  # `base:` over the top level's
    # the command line over the file: --rounds 1 --seeds 5,6 --set train.epochs=4
    over = load_sweep_file(sweep, name=None, rounds=1, grid={"seeds": [5, 6]}, base={"train": {"epochs": 4}})
    assert (over.name, over.rounds, over.grid.a_values, over.grid.seeds) == ("g", 1, [0.0, 1.0], [5, 6])
    assert over.base == {"train": {"epochs": 4, "batch_size": 8}}
    assert load_sweep_file(None, preset="tiny-test").rounds == 1  # no file: the CLI's defaults

    def refused(text: str) -> str:
        out = CliRunner().invoke(app, ["sweep", "--config", str(_write(tmp_path / "bad.yaml", text)),
                                       "--data-dir", str(tmp_path / "data")])
        assert out.exit_code == 2 and len(out.output.strip().splitlines()) == 1, out.output
        return out.output.strip()

    assert refused("grid:\n  a_value: [1]\n") == "invalid sweep: grid.a_value: Extra inputs are not permitted"
    assert refused("grid:\n  losses: [sft, ppo]\n").startswith("invalid sweep: grid.losses.1: Input should be ")
    assert refused("train:\n  lrr: 1\n") == "invalid sweep: train.lrr: Extra inputs are not permitted"
    assert refused("experiment: x\n").startswith("invalid sweep: base: experiment: a sweep sets these itself")
    assert refused("name: [\n").startswith(f"config file {tmp_path / 'bad.yaml'} line 2, column 1: invalid YAML")
    assert not (tmp_path / "data").exists()


def test_a_run_writes_its_config_beside_its_results_once_the_name_is_its(tmp_path) -> None:
    from east_tasks import steps

    cfg = load_config("tiny-test", experiment="written", data_dir=tmp_path, weighting={"a": 2.0})
    path = tmp_path / "experiments" / "written" / "config.yaml"
    steps.claim_experiment(cfg)  # the run's start, once its data is in (flows/self_train.py)
    assert path.read_text().startswith(f"# written: the resolved config of its last run; rerun (or continue, "
                                       f"raising rounds) with\n#   east run --config {path}\n")
    assert load_config_file(path) == cfg
    with pytest.raises(UserError, match="weighting.a: 2.0 -> 1.0"):  # another config under the name: refused ...
        steps.claim_experiment(cfg.model_copy(update={"weighting": cfg.weighting.model_copy(update={"a": 1.0})}))
    assert load_config_file(path) == cfg  # ... and the file left as it was
    steps.claim_experiment(cfg.model_copy(update={"rounds": 3}))  # continued: replaced whole, atomically
    assert load_config_file(path).rounds == 3 and [p.name for p in path.parent.iterdir()] == ["config.yaml"]
    assert write_config_file(cfg) == path


def test_rerun_from_the_written_config_is_a_full_cache_hit(finished_run, tmp_path) -> None:
    """`east run --config data_dir/experiments/<name>/config.yaml` reruns the experiment as it was: every step's key
    the same, every step found done (none recomputed, no row rewritten)."""
    cfg, records = finished_run
    data_dir = tmp_path / "copy"
    shutil.copytree(cfg.data_dir, data_dir)
    written = data_dir / "experiments" / cfg.experiment / "config.yaml"
    assert load_config_file(written) == cfg  # what the run wrote is what it ran

    def steps() -> tuple[list, list]:
        with Store(data_dir / "east.duckdb") as s:
            return (s.execute("SELECT step_key, status, updated_at FROM step_status ORDER BY step_key"),
                    s.execute("SELECT round, step_keys FROM experiment_rounds ORDER BY round"))

    before = steps()
    out = CliRunner().invoke(app, ["run", "--config", str(written), "--data-dir", str(data_dir)])
    assert out.exit_code == 0, out.output
    assert steps() == before and {status for _, status, _ in before[0]} == {"done"} and len(before[1]) == 3
    assert load_config_file(written) == cfg.model_copy(update={"data_dir": data_dir})  # rewritten by the rerun
