"""The `skysift` command: serve a stage, poll, run a round, label, score, dev, bench, experiment.

Heavy libraries (MLflow, scikit-learn) are imported inside commands, so `--help` and `serve` stay fast.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional

import typer

from skysift import config, errors

app = typer.Typer(
    help="skysift: active learning on astronomical alert streams (ZTF, Rubin/LSST).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect and validate the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def load_settings() -> config.Settings:
    try:
        return config.load()
    except errors.ConfigError as exc:
        fail(str(exc))


@app.command()
def serve(
    service: str = typer.Argument(..., help=f"One of: {', '.join(config.SERVICES)}."),
    port: Optional[int] = typer.Option(None, help="gRPC port (default: the port of SKYSIFT_<SERVICE>_ADDRESS)."),
    metrics_port: Optional[int] = typer.Option(None, help="Prometheus /metrics port (default: gRPC port + 1000; 0 picks a free port)."),
) -> None:
    """Run one gRPC service until SIGTERM (health, reflection and metrics included)."""
    from skysift import logs
    from skysift.rpc import server

    if service not in config.SERVICES:
        fail(f"unknown service {service!r}; expected one of {', '.join(config.SERVICES)}")
    settings = load_settings()
    logs.setup(settings.log_level, settings.log_json)
    port = port if port is not None else int(settings.address(service).rsplit(":", 1)[1])
    metrics_port = metrics_port if metrics_port is not None else port + 1000
    module = importlib.import_module(f"skysift.{service}.service")
    try:
        running = server.start(service, lambda s: module.register(s, settings), settings, port, metrics_port)
    except (errors.SkysiftError, OSError) as exc:
        fail(f"{service} failed to start: {exc}")
    server.serve_forever(running, settings.shutdown_grace_seconds)


@config_app.command("check")
def config_check() -> None:
    """Validate every settings class against the environment and print the non-secret values."""
    settings = load_settings()
    for name, value in settings.model_dump().items():
        typer.echo(f"{name} = {'***' if 'secret' in name or 'token' in name or 'password' in name else value}")
    typer.secho("configuration OK", fg=typer.colors.GREEN)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
