"""The manual's Reference pages, generated from the code at every build (an mkdocs hook, mkdocs.yml `hooks:`).

Nothing here is written by hand, so the pages cannot go stale: the configuration from the pydantic models in
east_tasks/config/ (every field's type, default, bounds and description, the presets, the per-source and
per-loss defaults), the command line from typer's click tree of flows/cli/, and the store's tables and columns
from the SQL in east_tasks/store/schema.py (its comments become the descriptions).
"""

from __future__ import annotations

import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # mkdocs imports this file by path; the pages describe the checkout beside it
    sys.path.insert(0, str(ROOT))

import annotated_types  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from pydantic.fields import FieldInfo  # noqa: E402
from pydantic_core import PydanticUndefined  # noqa: E402

PAGES = {"reference/config.md": "config_page", "reference/cli.md": "cli_page", "reference/store.md": "store_page"}


def on_files(files: Any, config: Any) -> Any:
    """Adds the generated pages to the build (mkdocs calls this before it builds the nav)."""
    from mkdocs.structure.files import File

    for uri, page in PAGES.items():
        files.append(File.generated(config, uri, content=globals()[page]()))
    return files


def cell(text: object) -> str:
    """Text fit for one Markdown table cell: one line; outside code spans, pipes and Markdown escaped (inside them
    the table extension leaves pipes alone, and an escape would show)."""
    parts = re.sub(r"\s+", " ", str(text)).strip().split("`")  # odd parts are code spans
    return "`".join(p if i % 2 else _plain(p) for i, p in enumerate(parts))


def _plain(text: str) -> str:
    """Descriptions are plain text: `<data_dir>` is not an HTML tag, `**` not emphasis."""
    return text.replace("<", "&lt;").replace("|", "\\|").replace("*", "\\*")


def code(value: object) -> str:
    return f"`{value}`" if str(value) else ""


# --- configuration -------------------------------------------------------------------------------------------


def _sub_model(annotation: object) -> type[BaseModel] | None:
    """The model a field nests (`DataConfig`, or `LoraConfig | None`), else None."""
    for t in (annotation, *typing.get_args(annotation)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def type_name(annotation: object) -> str:
    """`int`, `"sft" | "dpo"`, `str | None`, `tuple[str, ...]`: the type as a reader writes it in a config."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def default_of(field: FieldInfo) -> str:
    if isinstance(field.default, BaseModel) or (field.default_factory is not None and
                                                _sub_model(field.annotation) is not None):
        return "(section below)"
    if field.default_factory is not None:
        return "computed when loaded (see description)"
    if field.default is PydanticUndefined:
        return "required"
    value = field.default
    if isinstance(value, str | Path) and str(value).startswith(f"{ROOT}/"):  # the checkout's own paths, as the
        value = type(value)(Path(value).relative_to(ROOT))                     # repository spells them
    return code(repr(value) if isinstance(value, str) else value)


BOUNDS = {annotated_types.Ge: ("≥", "ge"), annotated_types.Gt: (">", "gt"), annotated_types.Le: ("≤", "le"),
          annotated_types.Lt: ("<", "lt"), annotated_types.MinLen: ("length ≥", "min_length"),
          annotated_types.MaxLen: ("length ≤", "max_length")}


def bounds_of(field: FieldInfo) -> str:
    """`≥ 0`, `> 0, ≤ 1`, `pattern ^...$`: every constraint pydantic enforces on the field's value."""
    out = []
    for meta in field.metadata:
        if type(meta) in BOUNDS:
            sign, attr = BOUNDS[type(meta)]
            out.append(f"{sign} {getattr(meta, attr)}")
        elif getattr(meta, "pattern", None):
            out.append(f"pattern `{meta.pattern}`")
    return ", ".join(out)


def field_rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = ["| field | type | default | bounds | description |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        sub = _sub_model(field.annotation)
        desc = field.description or ""
        if sub is not None:  # a section of its own below
            desc = f"{desc} See [`{prefix}{name}`](#{(prefix + name).replace('.', '')}).".strip()
        rows.append(f"| `{prefix}{name}` | {cell(code(type_name(field.annotation)))} | {cell(default_of(field))} | "
                    f"{cell(bounds_of(field))} | {cell(desc)} |")
    return rows


def sections(model: type[BaseModel], prefix: str = "") -> list[tuple[str, type[BaseModel]]]:
    """(dotted name, model) of every model nested in `model`, depth first: data, data.columns, sampling, ..."""
    out = []
    for name, field in model.model_fields.items():
        if (sub := _sub_model(field.annotation)) is not None:
            out.append((prefix + name, sub))
            out += sections(sub, f"{prefix}{name}.")
    return out


def field_info(model: type[BaseModel], path: str) -> FieldInfo:
    """The field a dotted path names, e.g. `train.lora.r`."""
    head, _, rest = path.partition(".")
    field = model.model_fields[head]
    return field_info(_sub_model(field.annotation), rest) if rest else field


def flatten(values: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for key, value in values.items():
        if isinstance(value, dict) and key != "columns":
            out += flatten(value, f"{prefix}{key}.")
        else:
            out.append((prefix + key, value))
    return out


def config_page() -> str:
    from east_tasks import config

    top = config.ExperimentConfig
    lines = ["# Configuration", "",
             "Generated from the pydantic models in `east_tasks/config/` when this site was built: the single "
             "source of every default. Set any field with `east run --set FIELD=VALUE` (values parse as JSON, "
             "else as strings: `--set train.lr=1e-5`, `--set 'tracking.report_to=[\"mlflow\"]'`). A value outside "
             "its type or bounds is refused before any model loads, naming the field and what it allows.", "",
             "`east run` starts from a preset ([below](#presets)), then applies the options and `--set` values; the "
             "fields' own defaults are what a preset leaves unset.", "",
             "## Top level", "", cell(top.__doc__ or ""), "", *field_rows(top, "")]
    for name, model in sections(top):
        lines += ["", f"## {name}", "", cell(model.__doc__ or ""), "", *field_rows(model, f"{name}.")]
    lines += ["", "## Defaults that depend on other fields", "",
              "`train.lr` left unset takes the loss's rate (`DEFAULT_LR`):", "",
              "| train.loss | train.lr |", "|---|---|",
              *(f"| `{loss}` | `{lr:g}` |" for loss, lr in config.DEFAULT_LR.items()), "",
              "Each `data.source` fills in what a config leaves unset (`SOURCE_DEFAULTS`):", "",
              "| data.source | defaults |", "|---|---|",
              *(f"| `{src}` | {cell(', '.join(f'`{k} = {v!r}`' for k, v in flatten(d, 'data.')))} |"
                for src, d in config.SOURCE_DEFAULTS.items())]
    presets = {name: dict(flatten(values)) for name, values in config.PRESETS.items()}
    fields = list(dict.fromkeys(k for values in presets.values() for k in values))
    lines += ["", "## Presets", "",
              "`east run --preset NAME` (default `tiny`). Each preset sets the fields below (`PRESETS`); a blank "
              "cell keeps the field's default.", "",
              f"| field | default | {' | '.join(f'`{name}`' for name in presets)} |",
              f"|---|---|{'---|' * len(presets)}",
              *(f"| `{k}` | {cell(default_of(field_info(top, k)))} | "
                + " | ".join(cell(code(repr(values[k]))) if k in values else "" for values in presets.values())
                + " |" for k in fields)]
    grid = config.SweepGrid
    lines += ["", "## Sweep grid", "",
              "`east sweep` options left out take these (`SweepGrid`). " + cell(grid.__doc__ or ""), "",
              *field_rows(grid, "")]
    return "\n".join(lines) + "\n"


# --- command line --------------------------------------------------------------------------------------------


def _commands(command: Any, path: str) -> list[tuple[str, Any]]:
    out = [(path, command)]
    for name, sub in (getattr(command, "commands", None) or {}).items():
        out += _commands(sub, f"{path} {name}")
    return out


def _param_row(param: Any) -> str:
    if param.param_type_name == "argument":
        name = f"`{param.name.upper()}` (argument)"
    else:
        name = ", ".join(f"`{o}`" for o in (*param.opts, *param.secondary_opts))
    kind = "flag" if getattr(param, "is_flag", False) else param.bare_type()
    if param.multiple:
        kind += ", repeatable"
    lo, hi = getattr(param, "min", None), getattr(param, "max", None)
    if lo is not None or hi is not None:
        kind += f", {lo if lo is not None else ''}..{hi if hi is not None else ''}"
    default = "required" if param.required else ("" if param.default in (None, False, ()) else code(param.default))
    return f"| {name} | {cell(kind)} | {cell(default)} | {cell(getattr(param, 'help', None) or '')} |"


def cli_page() -> str:
    import typer

    from flows.cli import app

    root = typer.main.get_command(app)
    lines = ["# Command line", "",
             "Generated from the typer application in `flows/cli/` when this site was built. `east COMMAND "
             "--help` prints the same.", ""]
    for path, command in _commands(root, "east"):
        level = "#" * min(path.count(" ") + 2, 4)
        lines += [f"{level} {path}", ""]
        if command.help:
            lines += [cell(command.help), ""]
        subs = getattr(command, "commands", None)
        if subs:
            lines += ["Commands: " + ", ".join(f"[`{path} {n}`](#{(path + ' ' + n).replace(' ', '-')})"
                                               for n in subs), ""]
        params = [p for p in command.params if not getattr(p, "hidden", False)]
        if params:
            lines += ["| option | type | default | help |", "|---|---|---|---|", *map(_param_row, params), ""]
    return "\n".join(lines)


# --- store ---------------------------------------------------------------------------------------------------

_CREATE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+) \(")
_COLUMN = re.compile(r"(?:^|,)\s*(\w+) ([A-Z][A-Z0-9]*)")


def parse_schema(sql: str) -> list[dict]:
    """Each table of the schema's SQL in order: its name, the comment lines above it, and its columns (name, type,
    and the comment on the column's line or on the comment lines just before it). Read line by line: a comment may
    hold a ";" or a ")"."""
    tables: list[dict] = []
    table, pending = None, ""
    for line in sql.splitlines():
        code, _, note = line.partition("--")
        note = note.strip()
        if match := _CREATE.search(code):
            table = {"name": match.group(1), "comment": pending, "columns": []}
            tables.append(table)
            code, pending = code[match.end():], ""
        elif not code.strip():
            pending = " ".join(filter(None, (pending, note)))
            continue
        if table is None:
            continue
        for name, sql_type in _COLUMN.findall(code):
            if name != "PRIMARY":
                table["columns"].append({"name": name, "type": sql_type, "comment": note or pending})
        pending = ""
        if code.rstrip().endswith(");"):
            table = None
    return tables


def store_page() -> str:
    from east_tasks.store import schema

    tables = parse_schema(schema.SCHEMA)
    parsed = {t["name"]: {c["name"] for c in t["columns"]} for t in tables}
    if parsed != schema.COLUMNS:  # the page must say what the store checks; a parse that disagrees stops the build
        raise ValueError(f"docs/hooks/reference.py read other columns from the schema than store.schema.COLUMNS: "
                         f"{parsed} != {schema.COLUMNS}")
    lines = ["# Store tables", "",
             f"Generated from `east_tasks/store/schema.py` (schema version {schema.SCHEMA_VERSION}) when this site "
             "was built; descriptions are the schema's own SQL comments. The same tables live in the DuckDB file "
             "(`<data_dir>/east.duckdb`) or in a DuckLake (without the key constraints, which hold by "
             "construction there). `east export --parquet DIR` writes each as `DIR/<table>.parquet`.", "",
             "| table | key | columns |", "|---|---|---|",
             *(f"| [`{t['name']}`](#{t['name']}) | {', '.join(schema.KEYS.get(t['name'], ())) or '-'} | "
               f"{len(t['columns'])} |" for t in tables)]
    for table in tables:
        key = schema.KEYS.get(table["name"], ())
        lines += ["", f"## {table['name']}", ""]
        if table["comment"]:
            lines += [cell(table["comment"]), ""]
        lines += [f"Key: {', '.join(f'`{k}`' for k in key)}." if key else "No key.", "",
                  "| column | type | description |", "|---|---|---|",
                  *(f"| `{c['name']}`{' (key)' if c['name'] in key else ''} | `{c['type']}` | {cell(c['comment'])} |"
                    for c in table["columns"])]
    return "\n".join(lines) + "\n"
