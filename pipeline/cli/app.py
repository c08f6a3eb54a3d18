"""The typer app of the ``pipeline`` command, its ``bench`` group, and the one place where
errors become exit codes.

Nothing here imports torch: command modules import the library inside their functions, so
``pipeline --help`` is instant.
"""
from __future__ import annotations

import functools

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Head-pose knowledge distillation with a cached convolutional-ensemble teacher.")
bench_app = typer.Typer(no_args_is_help=True, help="Side-by-side benchmarks that print ratios.")
app.add_typer(bench_app, name="bench")


def exits_on_errors(command):
    """A user error ends the command with its message, no traceback: a bad setting
    (ConfigError) exits 2, any other error about inputs or files (PipelineError) exits 1."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from ..config import ConfigError
        from ..errors import PipelineError, user_message
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            typer.echo(f"config error: {user_message(exc)}", err=True)
            raise typer.Exit(2)
        except PipelineError as exc:
            typer.echo(f"error: {user_message(exc)}", err=True)
            raise typer.Exit(1)
    return wrapper
