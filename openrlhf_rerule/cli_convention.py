"""The one convention every command line of this package follows (docs/development.md, "Command-line conventions"):
- flags are spelled OpenRLHF's way, with underscores (`--micro_batch_size`); the hyphen spelling
  (`--micro-batch-size`) is accepted as an alias;
- booleans are switches (`--offline`); one that defaults to on is turned off with `--no_<name>`;
- every `--help` shows each flag's default, and required flags say so;
- exit code 0 = done, 2 = a user mistake (bad flag, file, data or model path), reported as one line naming
  the file / line / field or the flag, without a traceback (`--debug` shows it); 1 = anything else.

It imports nothing of the package, so that any layer (data, backends, experiments, the refusal tool) can use it
without pulling in the `rerule` dispatcher or making an import circle.
"""

import argparse
import functools
import sys

USER_ERROR = 2


class UserError(Exception):
    """A mistake in the user's input (a flag, a path, a setting, a data file): reported as one line with exit code 2.
    Input errors of a layer (e.g. data.schema.DataError) subclass it."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps epilogs as written and ends every option's help with its default, or "(required)"."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.required:
            return text + " (required)"
        if "default:" in text or action.default in (argparse.SUPPRESS, None) or not action.option_strings:
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)) or action.nargs == 0:
            return text
        return text + " (default: %(default)s)"


def underscore_flag(token: str) -> str:
    """`--micro-batch-size=3` -> `--micro_batch_size=3`; values and positionals are left alone."""
    if not token.startswith("--") or token == "--":
        return token
    name, sep, value = token.partition("=")
    return "--" + name[2:].replace("-", "_") + sep + value


def number(kind=float, minimum=None, maximum=None, below=None):
    """An argparse type: a finite int / float within [minimum, maximum] (or < below); anything else is a usage
    error naming the flag, before any work starts."""
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum) \
                or (below is not None and value >= below):
            bounds = [f">= {minimum}" if minimum is not None else "", f"<= {maximum}" if maximum is not None else "",
                      f"< {below}" if below is not None else ""]
            raise argparse.ArgumentTypeError(f"must be {' and '.join(b for b in bounds if b)}, got {text}")
        return value
    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


class Parser(argparse.ArgumentParser):
    """ArgumentParser with the rerule convention: hyphen spellings accepted, defaults in --help, and a usage
    error printed as one line with exit code 2. Sub-parsers made by add_subparsers inherit it."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else args
        return super().parse_known_args([underscore_flag(str(a)) for a in args], namespace)

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(USER_ERROR)


def user_errors(prog: str):
    """Decorate a command's main(argv): a UserError (DataError included) becomes one line on stderr and exit code
    2; `--debug` anywhere in argv re-raises it with the traceback."""
    return functools.partial(_guard, prog)


def _guard(prog: str, main):
    @functools.wraps(main)
    def wrapped(argv=None):
        argv = list(sys.argv[1:] if argv is None else argv)
        debug = "--debug" in argv
        argv = [a for a in argv if a != "--debug"]
        try:
            return main(argv)
        except SystemExit as e:  # argparse's usage errors (already printed, one line) and --help: a return code
            if e.code is None or isinstance(e.code, int):
                return e.code or 0
            raise
        except UserError as e:
            if debug:
                raise
            print(f"{prog}: error: {e}", file=sys.stderr)
            return USER_ERROR
    return wrapped
