"""What vLLM's processes start with: a log without the warnings every run of this pipeline raises and that ask nothing
of the user (docs/output.md lists them and why each is harmless), and, on the CPU build, tcmalloc and Intel OpenMP
preloaded, as that build asks (`bench/generation_throughput.py` measures the gain).

The engine runs in processes of its own (EngineCore and its workers, started with `spawn`, which execs a fresh
interpreter), so both go through what those inherit: the environment. The log's filter travels as the Python logging
config vLLM applies in each of its processes (VLLM_LOGGING_CONFIG_PATH); LD_PRELOAD and TORCH_CPP_LOG_LEVEL are set
only while the engine starts (`engine_environment`), so training and every other child of a run start as before.
Setting VLLM_LOGGING_LEVEL (or VLLM_LOGGING_CONFIG_PATH) shows vLLM's log as vLLM writes it, warnings and all.
"""

from __future__ import annotations

import atexit
import gc
import glob
import hashlib
import json
import logging
import logging.config
import os
import re
import sys
import sysconfig
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Warnings each engine start or weight sync of this pipeline logs, none of which needs anything done (docs/output.md).
BENIGN = re.compile("|".join([
    # a weight sync: a checkpoint holds no weights for the rotary cache nor for a head tied to the embedding
    r"^(RotaryEmbedding|ParallelLMHead): Failed to load weights$",
    # the CPU build beside torch's CUDA Triton; vLLM falls back to kernels that need none
    r"^Triton is installed, but doesn't include CPU backend",
    r"^Triton is not installed\. triton-cpu is expected",
    r"^Model Runner V2 requires Triton",
    # the pipeline's own settings on the CPU build (engines/generation/vllm_backend.py says why each)
    r"^This model does not officially support disabling chunked prefill",
    r"^Enforce eager set, disabling torch\.compile",
    r"^Inductor compilation was disabled by user settings",
    r"^VLLM_CPU_NUM_OF_RESERVED_CPU is less than the minimum",
    r"^OMP_NUM_THREADS=\d+ is set; leaving Torch threads",
]))


def quiet_library_warnings() -> None:
    """Python warnings libraries raise inside the engine about their own use of torch."""
    warnings.filterwarnings("ignore", message=r"`torch\.distributed\.reduce_op` is deprecated", category=FutureWarning)


class QuietVllm(logging.Filter):
    """Drops `BENIGN` records. Built by `logging.config` in each vLLM process, where it also quiets the library
    warnings (the one hook that runs in the engine's own processes before they work)."""

    def __init__(self) -> None:
        super().__init__()
        quiet_library_warnings()

    def filter(self, record: logging.LogRecord) -> bool:
        return not BENIGN.search(record.getMessage())


_CONFIG_PREFIX = "east-vllm-logging-"


def user_asked() -> bool:
    """The user set vLLM's own logging: it logs as vLLM does, unfiltered."""
    config = os.environ.get("VLLM_LOGGING_CONFIG_PATH", "")
    return bool(os.environ.get("VLLM_LOGGING_LEVEL")) or bool(config and not Path(config).name.startswith(
        _CONFIG_PREFIX))


def _logging_config() -> dict:
    """vLLM's own config (one stream handler on the `vllm` logger), at WARNING and with `QuietVllm`. The format is
    plain `logging`'s: vLLM's formatter would import vLLM, and vLLM logs while it is imported."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"quiet": {"()": f"{__name__}.QuietVllm"}},
        "formatters": {"vllm": {"format": "(%(processName)s pid=%(process)d) %(levelname)s %(asctime)s "
                                          "[%(filename)s:%(lineno)d] %(message)s", "datefmt": "%m-%d %H:%M:%S"}},
        "handlers": {"vllm": {"class": "logging.StreamHandler", "formatter": "vllm", "filters": ["quiet"],
                              "level": "WARNING",
                              "stream": os.environ.get("VLLM_LOGGING_STREAM", "ext://sys.stdout")}},
        "loggers": {"vllm": {"handlers": ["vllm"], "level": "WARNING", "propagate": False}},
    }


def quiet_vllm_logging() -> None:
    """In this process and every vLLM process it starts: vLLM's log at WARNING, less `BENIGN`. Call before vLLM
    is imported (it logs while it is imported); a no-op where the user set vLLM's logging."""
    if user_asked():
        return
    config = _logging_config()
    text = json.dumps(config, sort_keys=True)
    digest = hashlib.md5(text.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"{_CONFIG_PREFIX}{os.getuid()}-{digest}.json"
    if not path.exists():  # the same text every time: written once, whole (renamed into place)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(path)
    logging.config.dictConfig(config)
    quiet_library_warnings()


ENGINE_PROCESS = "EAST_VLLM_ENGINE_PROCESS"  # in the environment vLLM's engine processes start with (=1)
# How long the EngineCore waits for its workers to exit when it stops, before it signals them: longer than vLLM's
# default, which a worker on a loaded machine outlives (and then gets SIGTERM and SIGKILL)
WORKER_GRACE, WORKER_GRACE_S = "VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS", 10
_set_up = False


def setup_engine_process() -> None:
    """In one of vLLM's engine processes (EngineCore, its workers), as early as east's code runs there: spawn
    imports the command's main module (`flows.cli`) before vLLM, and a worker imports the worker extension.

    - vLLM's log quieted as in the process that started the engine, before vLLM logs while it is imported;
    - the interpreter's last garbage collection skipped at exit (`_leave_quickly`)."""
    global _set_up
    if os.environ.get(ENGINE_PROCESS) != "1" or _set_up:
        return
    _set_up = True
    path = os.environ.get("VLLM_LOGGING_CONFIG_PATH", "")
    if Path(path).name.startswith(_CONFIG_PREFIX) and Path(path).is_file() and not user_asked():
        logging.config.dictConfig(json.loads(Path(path).read_text()))
    atexit.register(_leave_quickly)  # the first registered, so the last run


def _leave_quickly() -> None:
    """After every other exit handler of an engine process: no last garbage collection (`gc.freeze`, as vLLM's own
    ROCm shutdown does). After vLLM's teardown it scans the engine's heap for seconds, long enough for the
    EngineCore to outlive vLLM's wait for it and the worker the EngineCore's grace period (docs/concepts/engines.md).
    The memory goes back to the system with the process; what the objects left then
    report as the interpreter unloads their modules (nanobind's "leaked instances" of Triton's bindings) is not
    shown: stderr is closed from here on, with the process's exit code kept."""
    gc.freeze()
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)


def preload_libraries() -> tuple[list[str], str]:
    """What vLLM's CPU build wants in LD_PRELOAD (tcmalloc, then Intel OpenMP), and a line saying what was found.
    Empty where either is missing, where EAST_NO_PRELOAD=1, or where LD_PRELOAD names them already."""
    if os.environ.get("EAST_NO_PRELOAD", "") not in ("", "0"):
        return [], "off (EAST_NO_PRELOAD is set)"
    given = os.environ.get("LD_PRELOAD", "")
    if "libtcmalloc" in given and "libiomp" in given:
        return [], f"already in LD_PRELOAD ({given})"
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    system = [f"/usr/lib/{multiarch}", "/usr/lib64", "/usr/lib", "/usr/local/lib"]
    tcmalloc = _first(system + [str(Path(sys.prefix) / "lib")], ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"))
    iomp = _first([str(Path(sys.prefix) / "lib"), *system], ("libiomp5.so",))
    missing = [name for name, found in (("tcmalloc (apt-get install libtcmalloc-minimal4)", tcmalloc),
                                        ("libiomp5 (pip install intel-openmp)", iomp)) if found is None]
    if missing:
        return [], f"not found: {', '.join(missing)}"
    return [tcmalloc, iomp], f"{tcmalloc}, {iomp}"  # type: ignore[list-item]


def _first(dirs: list[str], names: tuple[str, ...]) -> str | None:
    return next((hit for d in dirs for name in names for hit in sorted(glob.glob(os.path.join(d, name)))), None)


@contextmanager
def engine_environment(cpu: bool) -> Iterator[None]:
    """Around starting an engine: the environment its processes inherit (marked as the engine's, see
    `setup_engine_process`; the workers' grace at shutdown; preloads on the CPU build; torch's C++ warnings off where
    vLLM's log is quieted), then this process's own again."""
    before = {k: os.environ.get(k) for k in ("LD_PRELOAD", "TORCH_CPP_LOG_LEVEL", ENGINE_PROCESS, WORKER_GRACE)}
    os.environ[ENGINE_PROCESS] = "1"
    os.environ.setdefault(WORKER_GRACE, str(WORKER_GRACE_S))
    libraries, found = preload_libraries() if cpu else ([], "")
    if libraries:
        os.environ["LD_PRELOAD"] = ":".join([*libraries, *filter(None, [before["LD_PRELOAD"]])])
    elif found.startswith("not found"):  # vLLM's own warning says what is missing, not how to get it
        logging.getLogger(__name__).warning("vLLM's CPU engine starts without the tcmalloc and Intel OpenMP it asks "
                                            "for (%s); once installed, east preloads them (docs/output.md)", found)
    if not user_asked():  # e.g. the worker's "NUMA binding: Using MEMBIND policy ..." from vLLM's C++ side
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
