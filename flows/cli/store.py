"""Looking after the store: `east gc` (what no run needs), `east store check` and `east store backup`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from east_tasks.errors import ENVIRONMENT_EXIT
from east_tasks.paths import DEFAULT_DATA_DIR
from flows.cli.common import DataDir, console, fail, failures_in_one_line, open_store

app = typer.Typer(no_args_is_help=True, help="Check the store, or copy it consistently.")


def gc(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    keep_last: Annotated[int | None, typer.Option(min=1, help="also remove the checkpoints of every round before "
                                                  "each experiment's last K (default: keep every round's)")] = None,
    delete: Annotated[bool, typer.Option("--delete", help="remove them (default: only list them)")] = False,
) -> None:
    """Checkpoints the store does not reference and temp dirs killed runs left; a dry run unless --delete.

    Never what a run may use: a live writer's temp dir (another machine's: one active in the last hour), or a
    checkpoint a round, a trained step, a started training step or a held claim refers to."""
    from east_tasks.store.housekeeping import removable, remove

    with open_store(data_dir) as store:
        paths = removable(store, data_dir / "checkpoints", keep_last)
    for path in paths:
        typer.echo(f"{'removing' if delete else 'would remove'} {path}")
    if delete:
        console.print(f"removed {len(paths)} directories, {remove(paths) / 1e6:.1f} MB")
    else:
        console.print(f"{len(paths)} directories; run with --delete to remove them")


@app.command("check")
def store_check(data_dir: DataDir = DEFAULT_DATA_DIR,
                quick: Annotated[bool, typer.Option("--quick", help="skip hashing the checkpoints' files")] = False,
                ) -> None:
    """Opens the store (schema version and columns), reads back every table (DuckDB verifies each block's
    checksum), looks for the checkpoints it records and hashes each one's files against its stored hash (not with
    --quick); exit 3 if something cannot be read or a checkpoint does not match."""
    from east_tasks.store.housekeeping import check, verify_checkpoints

    with failures_in_one_line(data_dir), open_store(data_dir) as store:
        results = check(store, data_dir)
        recorded = [] if quick else store.checkpoint_hashes()
    hashes = [(True, "checkpoint hashes: not checked (--quick)")] if quick else verify_checkpoints(recorded, data_dir)
    for ok, what in results + hashes:
        typer.echo(f"{'ok     ' if ok else 'FAILED '} {what}")
    if not all(ok for ok, what in results[:-1]):  # missing checkpoints are recomputed by a rerun: a warning
        fail("the store cannot be read whole: restore it from a backup (`east store backup`), or move it aside "
             "and rerun", ENVIRONMENT_EXIT)
    if not hashes[-1][0]:  # the first damaged checkpoint, and what to do
        fail(hashes[0][1] + (f"; {len(hashes) - 2} more do not match either" if len(hashes) > 2 else ""),
             ENVIRONMENT_EXIT)


@app.command("backup")
def store_backup(dest: Annotated[Path, typer.Argument(help="directory for the copy (DEST/east.duckdb)")],
                 data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """A consistent copy of the store (the file, or a lake copied into a file) while runs may be writing to it.
    Copy data_dir/checkpoints beside it to make DEST a data dir of its own (checkpoint paths are relative)."""
    from east_tasks.store.housekeeping import backup

    with failures_in_one_line(data_dir), open_store(data_dir) as store:
        final = backup(store, dest)
    console.print(f"backed up {store.location} to {final} ({final.stat().st_size / 1e6:.1f} MB)")
