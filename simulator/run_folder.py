"""A run folder on disk: written whole or marked interrupted, and read back as hostile input.

Writing: a run goes into a fresh staging folder beside its run folder (`.NAME.partial`) and is
moved in place at the end, so a new run never mixes with an earlier run's summary, charts or
report. A run that is interrupted (Ctrl-C, SIGTERM) or crashes is still moved in place, with an
`INTERRUPTED` file saying so: `paysim check` and `paysim report` refuse it instead of judging
half a history.

Reading: `history.jsonl`, `final_state.json` and `ledgers.json` may have been truncated or
edited by hand. Every problem is a `RunFolderError` naming the file and line (the CLI prints it
and exits 2), never a traceback.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

INTERRUPTED = "INTERRUPTED"

#: size limits of what a run folder's files may hold (a 100,000-purchase run writes ~1 GB)
MAX_HISTORY_BYTES = 8 * 1024**3
MAX_HISTORY_LINE_BYTES = 4 * 1024**2
MAX_JSON_FILE_BYTES = 1024**3


class RunFolderError(Exception):
    """A run folder that cannot be judged; `str()` is one line: `file:line: problem`."""

    def __init__(self, path: Path, problem: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {' '.join(problem.split())}")


# ---- writing


def partial_dir(run_dir: Path) -> Path:
    return run_dir.parent / f".{run_dir.name}.partial"


@contextmanager
def staged(run_dir: Path) -> Iterator[Path]:
    """Yield a fresh, empty folder to write the run into; it becomes `run_dir` at the end.

    On any exception (KeyboardInterrupt included) the partial run still replaces `run_dir`,
    marked `INTERRUPTED` with the reason, and the exception goes on.
    """
    stage = partial_dir(run_dir)
    if stage.exists():
        shutil.rmtree(stage)  # left by a process killed outright (SIGKILL)
    stage.mkdir(parents=True)
    try:
        yield stage
    except BaseException as exc:
        reason = "was interrupted (Ctrl-C or SIGTERM)" if _is_interrupt(exc) else "crashed"
        detail = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
        (stage / INTERRUPTED).write_text(f"the run {reason}: {detail}\n", encoding="utf-8")
        publish(stage, run_dir)
        raise
    publish(stage, run_dir)


def publish(stage: Path, run_dir: Path) -> None:
    """Put `stage` where `run_dir` is, removing what was there (an earlier run's files)."""
    old = run_dir.parent / f".{run_dir.name}.old-{os.getpid()}"
    if run_dir.exists():
        run_dir.rename(old)
    stage.rename(run_dir)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def _is_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_interrupt(e) for e in exc.exceptions)
    return False


def interrupted(run_dir: Path) -> str | None:
    """Why the run in `run_dir` did not finish, or None if it did."""
    marker = run_dir / INTERRUPTED
    if not marker.is_file():
        return None
    return marker.read_text(encoding="utf-8", errors="replace")[:500].strip() or "interrupted"


# ---- reading


def read_history(path: Path) -> Iterator[dict[str, Any]]:
    """The history's entries, each checked for the shape every entry has (type, seq, t)."""
    _check_size(path, MAX_HISTORY_BYTES)
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if len(raw) > MAX_HISTORY_LINE_BYTES:
                raise RunFolderError(path, f"line longer than {MAX_HISTORY_LINE_BYTES} bytes", number)
            if not raw.strip():
                continue
            if not raw.endswith(b"\n"):
                raise RunFolderError(path, "truncated: the last line has no newline", number)
            yield history_entry(path, number, raw)


def history_entry(path: Path, number: int, raw: bytes) -> dict[str, Any]:
    try:
        entry = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise RunFolderError(path, f"not a JSON line ({_short(exc)})", number) from None
    if not isinstance(entry, dict):
        raise RunFolderError(path, "expected a JSON object", number)
    if not isinstance(entry.get("type"), str):
        raise RunFolderError(path, 'expected a string "type"', number)
    seq, t = entry.get("seq"), entry.get("t")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise RunFolderError(path, f'expected an integer "seq", got {_short(seq)}', number)
    if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t):
        raise RunFolderError(path, f'expected a number "t" (seconds), got {_short(t)}', number)
    return entry


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file holding one object (final_state.json, ledgers.json, summary.json)."""
    _check_size(path, MAX_JSON_FILE_BYTES)
    try:
        data = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise RunFolderError(path, f"not JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    except (ValueError, RecursionError) as exc:
        raise RunFolderError(path, f"not JSON: {_short(exc)}") from None
    if not isinstance(data, dict):
        raise RunFolderError(path, f"expected a JSON object, got {type(data).__name__}")
    return data


def _check_size(path: Path, limit: int) -> None:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise RunFolderError(path, f"cannot read: {exc.strerror or exc}") from None
    if size > limit:
        raise RunFolderError(path, f"{size:,} bytes, over the {limit:,}-byte limit")


def _short(value: object) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= 80 else text[:77] + "..."
