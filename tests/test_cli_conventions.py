"""One convention across the `rerule` sub-commands of this package (demo, data, train, the refusal tool):
underscore flags with hyphen aliases, every default and every required flag shown in --help, usage errors as
one line with exit code 2 (docs/development.md, "Command-line conventions")."""

import argparse

import pytest

from openrlhf_rerule.cli import main as rerule
from openrlhf_rerule.cli_convention import underscore_flag
from openrlhf_rerule.data.cli import build_parser as data_parser
from openrlhf_rerule.local.cli import build_parser as train_parser
from openrlhf_rerule.experiments.demo import build_parser as demo_parser


def all_parsers():
    for parser in (demo_parser(), data_parser(), train_parser()):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                yield from action.choices.values()


PARSERS = list(all_parsers())


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.prog)
def test_flags_are_underscored_and_help_shows_defaults_and_required(parser):
    help_text = " ".join(parser.format_help().split())
    for action in parser._actions:
        for flag in action.option_strings:
            if flag.startswith("--"):
                assert "-" not in flag[2:], f"{parser.prog}: {flag} is not OpenRLHF-style"
        if not action.option_strings or action.help in (None, argparse.SUPPRESS) or action.nargs == 0:
            continue
        if action.required:
            assert "(required)" in " ".join(HelpFormatterProbe(parser).help_for(action).split())
        elif action.default not in (None, argparse.SUPPRESS) and not action.dest.startswith("replay."):
            shown = " ".join(HelpFormatterProbe(parser).help_for(action).split())
            assert "default" in shown, f"{parser.prog} {action.option_strings}: no default in --help"
    assert help_text


class HelpFormatterProbe:
    """The help line argparse prints for one action, through the parser's own formatter."""

    def __init__(self, parser):
        self.formatter = parser._get_formatter()

    def help_for(self, action):
        return self.formatter._expand_help(action) if action.help else ""


def test_hyphen_spelling_is_an_alias():
    assert underscore_flag("--micro-batch-size") == "--micro_batch_size"
    assert underscore_flag("--out-dir=a-b") == "--out_dir=a-b"
    assert underscore_flag("-h") == "-h" and underscore_flag("--") == "--" and underscore_flag("my-file") == "my-file"
    a = data_parser().parse_args(["world", "--out", "x", "--num-forget", "2", "--num-retain=0"])
    b = data_parser().parse_args(["world", "--out", "x", "--num_forget", "2", "--num_retain=0"])
    assert vars(a) == vars(b)


def test_demo_help_shows_the_replay_values_the_demo_uses():
    text = " ".join(demo_parser().format_help().split())
    # min_groups, warm-up, capacity: the tiny model's, then --model's (REAL_MODEL_PROFILE)
    assert "(demo: 24; --model: 4)" in text and "(demo: 8; --model: 1)" in text and "(demo: 200; --model: 64)" in text


@pytest.mark.parametrize("argv", [["nope"], ["data", "nope"], ["train", "stage3"], ["demo", "--seeds", "x"],
                                  ["train", "stage1", "--model", "m"], ["data", "world"]])
def test_usage_errors_are_one_line_and_exit_2(argv, capsys):
    assert rerule(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "error" in err and "Traceback" not in err


def test_help_exits_0(capsys):
    assert rerule(["data", "--help"]) == 0 and rerule(["train", "stage2", "--help"]) == 0
    assert "(required)" in capsys.readouterr().out
