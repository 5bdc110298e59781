"""`skysift catalogs install|show`: the offline cross-match catalogues (VSX, GCVS, Mangrove) of this environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from skysift import errors

catalogs_app = typer.Typer(help="Offline cross-match catalogues (VSX, GCVS, Mangrove) for the enrichment stage.",
                           no_args_is_help=True)


@catalogs_app.command("install")
def install(
    dir: Optional[Path] = typer.Option(None, "--dir", help="Where to put them (default: inside this Python "
                                                           "environment, where enrichment looks first)."),
    wheel: Optional[Path] = typer.Option(None, help="A fink-science wheel already downloaded (checked by hash)."),
) -> None:
    """Extract the catalogues from the pinned fink-science wheel on PyPI (an install step; runs offline with --wheel)."""
    from skysift.cliutil import fail
    from skysift.enrichment.catalog_install import install as run_install
    from skysift.enrichment.catalogs import default_dir

    try:
        provenance = run_install(dir, wheel)
    except errors.SkysiftError as exc:
        fail(str(exc), code=1)
    rows = ", ".join(f"{name} {count:,}" for name, count in provenance["rows"].items())
    typer.echo(f"installed {provenance['source']} into {dir or default_dir()} ({rows} rows)")


@catalogs_app.command("show")
def show(dir: Optional[Path] = typer.Option(None, "--dir", help="Default: this environment's catalogues.")) -> None:
    """Print where the catalogues are and their provenance (source wheel, rows, citations)."""
    from skysift.cliutil import fail
    from skysift.enrichment.catalogs import PROVENANCE_FILE, default_dir

    path = (dir or default_dir()) / PROVENANCE_FILE
    if not path.is_file():
        fail(f"no catalogues at {path.parent}: run `skysift catalogs install`")
    typer.echo(f"{path.parent}\n{json.dumps(json.loads(path.read_text()), indent=2)}")


def register(app: typer.Typer) -> None:
    app.add_typer(catalogs_app, name="catalogs")
