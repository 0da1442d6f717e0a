"""Small helpers: atomic writes, content hashes, secrets kept out of what is shown."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def fingerprint(payload: Any) -> str:
    """Stable short key for anything JSON-serialisable (config fields, hashes, seeds)."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: nested config as dotted keys (for comparison, tracker params)."""
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


MODEL_FILES = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.json", "merges.txt", "chat_template.jinja"}


def is_model_file(p: Path) -> bool:
    return p.is_file() and (p.name in MODEL_FILES or p.suffix in {".safetensors", ".bin", ".model"})


def hash_dir(path: Path) -> str:
    """Content hash of what determines a model's behaviour (weights, config, tokenizer); ignores notes,
    manifests and mtimes, so a copied or re-downloaded model keeps its cache keys."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if is_model_file(p)):
        h.update(f.relative_to(path).as_posix().encode())
        with f.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def temp_prefix(name: str) -> str:
    """A temp file's or dir's name beside `name`: hidden, and naming its writer (host and pid), so housekeeping
    can tell a live writer's from one a killed run left (`writer_may_be_alive`)."""
    return f".{name}.tmp-{socket.gethostname()}-{os.getpid()}-"


_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?:(?P<host>.+)-(?P<pid>\d+)-)?[^-]+$")


def temp_target(path: Path) -> str | None:
    """The name a temp file or dir of `temp_prefix` stands in for; None if `path` is not one."""
    m = _TEMP.match(Path(path).name)
    return m.group("name") if m else None


def writer_may_be_alive(path: Path, recent_s: float = 3600) -> bool:
    """Whether the temp file or dir `path` may still be being written: its writer is a live process of this host,
    or (another host's writer, or a name from before writers were named) something in it changed within
    `recent_s`. A dead local writer's is stale at once."""
    m = _TEMP.match(Path(path).name)
    if m and m.group("pid") and m.group("host") == socket.gethostname():
        try:
            os.kill(int(m.group("pid")), 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's live process
            return True
        return True
    files = [path, *Path(path).rglob("*")] if Path(path).is_dir() else [path]
    newest = max((f.lstat().st_mtime for f in files if f.exists()), default=0.0)
    return time.time() - newest < recent_s


@contextmanager
def atomic_dir(final: Path, keep_equal: bool = False) -> Iterator[Path]:
    """Yields a temp dir beside `final`; renames it into place only if the block succeeds. With `keep_equal`,
    a `final` already there with the same content (`hash_dir`) is left in place: another process wrote the same
    model while this one computed it, and may be reading it."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final.name), dir=final.parent))
    try:
        yield tmp
        if keep_equal and final.is_dir() and hash_dir(final) == hash_dir(tmp):
            return
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Calls write(tmp_path) then renames tmp onto `path`, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def mask_url(text: str) -> str:
    """`text` with any password in a libpq conninfo or URL replaced, to show in logs, reports and artifacts."""
    text = re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text, flags=re.I)
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)
