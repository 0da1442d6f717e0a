"""`east export`: a round's model or training rows handed off, or every table of the store as Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from east_tasks.paths import DEFAULT_DATA_DIR
from flows.cli.common import DataDir, console, failures_in_one_line, open_store

app = typer.Typer(help="Hand a round off: its model (`model`), its training rows (`data`); or, with --parquet DIR, "
                  "every table of the store.")
Target = Annotated[str, typer.Argument(help="EXPERIMENT or EXPERIMENT:ROUND (default: the last recorded round; "
                                       "0 = the base model)")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="replace an earlier export in DIR")]


@app.callback(invoke_without_command=True)
def export(
    ctx: typer.Context,
    parquet: Annotated[Path | None, typer.Option(help="directory for one <table>.parquet per store table")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Every table of the store as Parquet (for pandas, Polars, Spark, DuckDB elsewhere) with --parquet DIR; a
    round's model or training rows with `export model` / `export data`."""
    if ctx.invoked_subcommand is not None:
        return
    if parquet is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)
    with open_store(data_dir) as store:
        rows = store.export_parquet(parquet)
    for table, n in rows.items():
        typer.echo(f"{parquet / table}.parquet: {n} rows")


@app.command("model")
def export_model(
    target: Target,
    out: Annotated[Path, typer.Argument(help="the model directory to write (config.json, model.safetensors, "
                                       "tokenizer, generation_config.json, README.md model card)")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    overwrite: Overwrite = False,
    push_to_hub: Annotated[str | None, typer.Option(help="then upload DIR to this Hugging Face Hub repo "
                                                    "(user/name; created if missing; token from `hf auth login` "
                                                    "or HF_TOKEN)")] = None,
) -> None:
    """A round's model as a plain Hugging Face model directory with a model card (AutoModelForCausalLM loads it)."""
    from east_tasks.report import export

    with failures_in_one_line(data_dir):
        experiment, round_ = export.parse_target(target)
        with open_store(data_dir) as store:
            ref = export.find_round(store, experiment, round_)
            export.export_model(store, data_dir, ref, out, overwrite)
        console.print(f"{ref.experiment}:{ref.round} (model {ref.model_hash}) -> {out}")
        if push_to_hub:
            console.print(f"pushed to {export.push_to_hub(out, push_to_hub)}")


@app.command("data")
def export_data(
    target: Target,
    out: Annotated[Path, typer.Argument(help="the directory to write (data.parquet, dataset/ for "
                                       "datasets.load_from_disk, README.md)")],
    accumulated: Annotated[bool, typer.Option("--accumulated", help="every row the round trained on (with "
                                              "train.accumulate, earlier rounds' too), not only the rows it kept")]
    = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    overwrite: Overwrite = False,
) -> None:
    """A round's training rows as a Hugging Face `datasets` dataset and Parquet, in TRL's columns for its loss."""
    from east_tasks.report import export

    with failures_in_one_line(data_dir):
        experiment, round_ = export.parse_target(target)
        with open_store(data_dir) as store:
            ref = export.find_round(store, experiment, round_)
            dataset = export.export_data(store, ref, out, accumulated, overwrite)
    console.print(f"{ref.experiment}:{ref.round}: {dataset.num_rows} rows ({', '.join(dataset.column_names)}) "
                  f"-> {out}")
