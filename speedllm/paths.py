"""Where model files are found: an explicit path, then ``$SPEEDLLM_MODELS``, then
``../shared/models`` (relative to the repository and to the working directory)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CheckpointError

_REPO = Path(__file__).resolve().parent.parent


def model_dirs() -> list[Path]:
    """The folders searched for a bare model file name, in order."""
    dirs = []
    env = os.environ.get("SPEEDLLM_MODELS")
    if env:
        dirs.append(Path(env))
    dirs.append(_REPO.parent / "shared" / "models")
    dirs.append(Path.cwd().parent / "shared" / "models")
    seen, out = set(), []
    for d in dirs:
        key = str(d.resolve()) if d.exists() else str(d)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def resolve_model_file(name: str | os.PathLike) -> Path:
    """Return an existing path for ``name``.

    ``name`` is tried as given first; a name that does not exist there is looked up by its
    file name in :func:`model_dirs`. Raises :class:`CheckpointError` naming the places
    searched when none has it.
    """
    p = Path(name)
    if p.is_file():
        return p
    if p.exists():
        raise CheckpointError(f"{p}: not a regular file")
    for d in model_dirs():
        cand = d / p.name
        if cand.is_file():
            return cand
    where = ", ".join(str(d) for d in model_dirs())
    raise CheckpointError(
        f"{name}: file not found (looked at the path given, then in: {where}; "
        f"put model files in one of these folders or set $SPEEDLLM_MODELS)")
