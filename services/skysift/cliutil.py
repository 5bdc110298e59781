"""What every `skysift` command module shares: failing with a message and an exit code, loading the settings.

Its own module, below :mod:`skysift.cli` and the command modules it registers (``ingest/cli.py``,
``trainer/cli.py``, ``inference/cli.py``), so that they import it and not the CLI that imports them.
"""

from __future__ import annotations

from typing import NoReturn

import typer

from skysift import config, errors


def fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def exit_code(exc: errors.SkysiftError) -> int:
    """2 when the command was given something wrong (configuration, arguments), 1 when it failed doing it."""
    return 2 if isinstance(exc, (errors.ConfigError, errors.InvalidArgument)) else 1


def load_settings() -> config.Settings:
    try:
        return config.load()
    except errors.ConfigError as exc:
        fail(str(exc))
