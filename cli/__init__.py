"""The gntkit command line (installed as gntkit.cli).

In the `gntkit` program, Ctrl-C and SIGTERM are turned into `Interrupted` from the moment the
command line is imported: not a KeyboardInterrupt, which typer and click would catch and end
silently, so that every command ends with one sentence and exit 130 (143 for SIGTERM) wherever the
signal lands. A program or a test that imports gntkit.cli keeps its own signal handling.
"""

import os
import signal
import sys
import threading


class Interrupted(BaseException):
    """Ctrl-C (SIGINT) or SIGTERM, raised where the main thread is; `signum` says which."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as shells report a command ended by it (130, 143)."""
        return 128 + self.signum


_loaded = []  # holds True once cli.main is imported: from then on a signal unwinds as Interrupted


def commands_loaded() -> None:
    """Called by cli.main once imported: signals raise Interrupted from then on."""
    _loaded.append(True)


def _interrupted(signum, frame):
    if not _loaded:  # still importing: nothing was written yet, and no handler is there to catch it
        sys.stderr.write(f"error: {'terminated' if signum == signal.SIGTERM else 'interrupted'} while starting.\n")
        sys.stderr.flush()
        os._exit(128 + signum)
    raise Interrupted(signum)


def _is_the_program() -> bool:
    """True in the `gntkit` console script (or `python -m gntkit.cli.main`), not in a program that imports gntkit.cli."""
    program = sys.argv[0] if sys.argv and sys.argv[0] else ""
    return os.path.basename(program) == "gntkit" or program.endswith(os.path.join("cli", "main.py"))


def _raise_again(hook_args) -> None:
    """An Interrupted raised while Python code ran inside a C callback (numba's compiler calls
    back into Python) is swallowed there, with a printed traceback: send the signal again from
    another thread a moment later, once this hook has returned, so that it unwinds at the next
    point it can, and print nothing. (Raising it here, with signal.raise_signal or
    _thread.interrupt_main, runs the handler inside this hook, where its exception is lost in
    turn.) Swallowed again, it comes back here and is sent again."""
    if isinstance(hook_args.exc_value, Interrupted):
        again = threading.Timer(0.01, os.kill, (os.getpid(), hook_args.exc_value.signum))
        again.daemon = True
        again.start()
        return
    sys.__unraisablehook__(hook_args)


if _is_the_program():
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)
    sys.unraisablehook = _raise_again
