"""The `rerule` command. Each sub-command lives in its own module and owns its argument parser;
this file only dispatches, importing the chosen module lazily so that `rerule --help` stays instant.

The convention every sub-command follows (Parser, UserError, user_errors, number, exit codes) lives in
openrlhf_rerule/cli_convention.py, which imports nothing of the package; it is re-exported here for callers that
import it from `openrlhf_rerule.cli`.
"""

import importlib
import sys

from openrlhf_rerule.cli_convention import (USER_ERROR, HelpFormatter, Parser, UserError, number,  # noqa: F401
                                            underscore_flag, user_errors)

COMMANDS = {
    "demo": ("openrlhf_rerule.experiments.demo", "synthetic world -> tiny model -> Stage 1 -> RULE vs ReRULE -> report"),
    "study": ("openrlhf_rerule.experiments.study", "RULE vs ReRULE vs random storage over hard/easy disparity levels of the demo world"),
    "data": ("openrlhf_rerule.data.cli", "build, convert and validate Stage 1 / Stage 2 / evaluation data"),
    "train": ("openrlhf_rerule.local.cli", "Stage 1 SFT or Stage 2 GRPO (+replay) with the embedded backend"),
    "eval": ("openrlhf_rerule.eval.cli", "evaluate a local model on TOFU, MUSE, RWKU or forget naturalness"),
    "report": ("openrlhf_rerule.eval.report", "side-by-side tables and plots of evaluation runs"),
}


def usage() -> str:
    lines = ["usage: rerule COMMAND [options]   (rerule COMMAND --help for a command's options)", "", "commands:"]
    lines += [f"  {name:<8} {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "exit codes: 0 done, 2 a mistake in the input (one line says which), 1 anything else; "
              "--debug shows tracebacks"]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"rerule: error: unknown command {name!r} (expected one of {', '.join(COMMANDS)})", file=sys.stderr)
        return USER_ERROR
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
