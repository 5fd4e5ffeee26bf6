"""The entry point of `ttplan` (console script) and `python -m ttplan`.

The heavy imports (torch, typer, the CLI) happen inside `main`, so that Ctrl-C while they
load is one line, not a KeyboardInterrupt traceback.
"""

import sys


def main() -> None:
    try:
        from ttplan.cli import app
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(2)
    app()


if __name__ == "__main__":
    main()
