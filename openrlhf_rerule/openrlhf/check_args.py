"""Validate a training command line through the real parsers, without launching anything (the recipes' DRY_RUN).

    python -m openrlhf_rerule.openrlhf.check_args deepspeed --num_gpus 4 --module openrlhf_rerule.cli.train_sft ARGS
    python -m openrlhf_rerule.openrlhf.check_args ray job submit ... -- python3 -m MODULE ARGS
    python -m openrlhf_rerule.openrlhf.check_args rerule train stage2 ARGS
    python -m openrlhf_rerule.openrlhf.check_args rerule {data,eval,report} ARGS     (parsed only)

The module after `--module` / `-m` picks the parser: OpenRLHF's train_sft (ours records, OpenRLHF's does not), or
OpenRLHF's train_ppo_ray plus our `--replay.*` and `--allow_format_change` (with the replay compatibility checks
and, on the models and data that exist already, the record checks of records.stage2_record); `rerule train` is the
embedded backend's parser (its record checks need the models: they run when it starts).
Exit status 0 means every argument was accepted.
"""

import json
import sys
from dataclasses import asdict

from .args import add_stage2_arguments, check_replay_compatible, replay_config_from_args, run_openrlhf_main
from .compat import import_openrlhf
from .records import stage2_record
from .whole_batches import whole_batches

PARSERS = {
    "openrlhf.cli.train_sft": ("openrlhf.cli.train_sft", None),
    "openrlhf_rerule.cli.train_sft": ("openrlhf.cli.train_sft", None),
    "openrlhf_rerule.openrlhf.train_sft": ("openrlhf.cli.train_sft", None),
    "openrlhf.cli.train_ppo_ray": ("openrlhf.cli.train_ppo_ray", None),
    "openrlhf_rerule.cli.train_ppo_ray": ("openrlhf.cli.train_ppo_ray", add_stage2_arguments),
    "openrlhf_rerule.openrlhf.train_ppo_ray": ("openrlhf.cli.train_ppo_ray", add_stage2_arguments),
}


def check(command: list[str]) -> dict:
    """Parse and validate `command`; return a short summary (raises SystemExit on a rejected argument)."""
    if command[:2] == ["rerule", "train"]:  # the embedded backend
        from openrlhf_rerule.local.cli import build_parser
        from openrlhf_rerule.local.config import Stage1Config, Stage2Config, build_config

        parsed = build_parser().parse_args(command[2:])
        config = build_config(Stage1Config if parsed.stage == "stage1" else Stage2Config, parsed)
        missing = [name for name in ("model", "data", "out") if not getattr(config, name)]
        if missing:
            raise SystemExit(f"rerule train {parsed.stage}: missing " + ", ".join(f"--{m}" for m in missing))
        replay = getattr(config, "replay", None)
        return {"module": f"rerule train {parsed.stage}",
                "replay": asdict(replay) if replay and replay.enable else None}

    if command[:1] == ["rerule"] and command[1:2] != ["train"]:  # data / eval / report: their own parsers
        import importlib

        from openrlhf_rerule.cli import COMMANDS

        if len(command) < 2 or command[1] not in COMMANDS:
            raise SystemExit(f"check_args: unknown rerule command: {' '.join(command)}")
        importlib.import_module(COMMANDS[command[1]][0]).build_parser().parse_args(command[2:])
        return {"module": f"rerule {command[1]}"}

    import_openrlhf()
    starts = [i + 2 for i, token in enumerate(command[:-1])
              if token in ("-m", "--module") and command[i + 1] in PARSERS]
    if not starts:
        raise SystemExit(f"check_args: no `-m/--module {{{', '.join(PARSERS)}}}` in the command: {' '.join(command)}")
    module, argv = command[starts[0] - 1], command[starts[0]:]
    upstream, extra_arguments = PARSERS[module]
    summary = {"module": module}

    def accept(args):
        if extra_arguments is not None:  # our entry point: what its train() checks before Ray starts
            summary.update(whole_batches(args))
            summary["replay"] = asdict(replay_config_from_args(args)) if args.replay.enable else None
            if args.replay.enable:
                check_replay_compatible(args)
            stage2_record(args)

    run_openrlhf_main(upstream, argv, train=accept, extra_arguments=extra_arguments)
    return summary


def main(argv=None) -> int:
    summary = check(list(sys.argv[1:] if argv is None else argv))
    module = summary.pop("module")
    print(f"DRY_RUN ok: arguments accepted by {module}'s parser" + (f" {json.dumps(summary)}" if summary else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
