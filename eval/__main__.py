"""`python -m hybridserve.eval MODEL [MODEL ...] [options]`: the eval command without the main CLI."""

import typer

from hybridserve.eval_cmd import eval_command


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(eval_command)
    app()


if __name__ == "__main__":
    main()
