"""One clear message for bad input, never a traceback.

Code raises `UserError("what is wrong and what was expected")`; the console commands catch it in
`run_cli` and print `error: ...` with exit status 2.
"""
from __future__ import annotations

import sys
from typing import Callable


class UserError(Exception):
    """A problem with the user's input (flag, config, file); the message is shown as is."""


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    try:
        return int(main(argv) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted: the run directory keeps its last checkpoint; run the same command to resume",
              file=sys.stderr)
        return 130
