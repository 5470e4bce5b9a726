"""OpenRLHF's own argument parsers, plus `--replay.*`.

OpenRLHF 0.11.2 builds its parsers inline under `if __name__ == "__main__":` (no function to import), so we run
that block itself: parsed from the installed source, executed in the module's namespace with two substitutions,
`train` (ours) and `argparse.ArgumentParser` (OpenRLHF's parser plus our flags). Every OpenRLHF flag, default,
hierarchisation and validation therefore stays OpenRLHF's, version for version; nothing is copied.
"""

import argparse
import ast
import importlib
import inspect
import sys
import types
from dataclasses import fields

from openrlhf_rerule.lineage import FORMAT_FLAG, FORMAT_HELP
from openrlhf_rerule.replay import ReplayConfig
from openrlhf_rerule.replay.config import add_replay_arguments


def add_stage2_arguments(parser: argparse.ArgumentParser) -> None:
    """What our train_ppo_ray adds to OpenRLHF's parser: `--replay.*` and the prompt-format override."""
    add_replay_arguments(parser)
    parser.add_argument(FORMAT_FLAG, action="store_true", default=False, help=FORMAT_HELP)


def replay_config_from_args(args) -> ReplayConfig:
    """The ReplayConfig of hierarchised args (`args.replay.<field>`); ReplayConfig validates the values."""
    return ReplayConfig(**{f.name: getattr(args.replay, f.name) for f in fields(ReplayConfig)})


def actor_data_parallel_size(args) -> int:
    """The actor's data-parallel ranks, as OpenRLHF counts them (`balance_experiences`; `async_run_method_batch`
    hands one chunk to each ring-attention / tensor-parallel group of `ring_attn_size x tensor_parallel_size`)."""
    return (args.actor.num_nodes * args.actor.num_gpus_per_node // args.ds.ring_attn_size
            // args.ds.tensor_parallel_size)


def check_replay_compatible(args) -> None:
    """Refuse, with the reason, the OpenRLHF settings under which hard-case replay cannot work as specified."""
    problems = []
    n = args.rollout.n_samples_per_prompt
    if n < 2:
        problems.append(f"--rollout.n_samples_per_prompt is {n}: a replay group needs n >= 2 samples per prompt "
                        "(the paper uses 8)")
    if args.algo.advantage.estimator != "group_norm":
        problems.append(f"--algo.advantage.estimator is {args.algo.advantage.estimator!r}: replay stores GRPO "
                        "group-normalised advantages; use --algo.advantage.estimator group_norm")
    if args.algo.kl.init_coef > 0 and not args.algo.kl.use_loss:
        problems.append("KL is in the reward (--algo.kl.use_loss is off): the replay update takes its KL term from "
                        "the stored reference log-probs as a loss; add --algo.kl.use_loss (RULE does) or set "
                        "--algo.kl.init_coef 0")
    if args.algo.dynamic_filtering_enable and args.algo.dynamic_filtering_range[0] >= 0:
        # The filter runs inside SamplesGenerator, before any log-prob exists, so filtered groups cannot be
        # captured; with rewards >= 0 a lower bound >= 0 drops exactly the hardest (all-zero) groups.
        problems.append(f"--algo.dynamic_filtering_range {tuple(args.algo.dynamic_filtering_range)} drops groups "
                        "whose mean reward is at or below its lower bound before the trainer sees them: those are "
                        "the hardest cases replay must store. Disable dynamic filtering, or give it a negative lower "
                        "bound (e.g. -1 1, which still drops all-correct groups)")
    if args.replay.behaviour == "rollout" and args.algo.advantage.is_correction_level == "off":
        problems.append("--replay.behaviour rollout weighs replayed samples by vLLM's own log-probs, which OpenRLHF "
                        "only records with --algo.advantage.is_correction_level token (or seq)")
    if args.train.async_enable:
        problems.append("--train.async_enable: the replay buffer is driven by the synchronous PPOTrainer only")
    if args.train.dynamic_batch_enable:
        # NaiveReplayBuffer.setup_dynamic_batch caps a pass at the on-policy step count (rollout.batch_size x n /
        # train.batch_size) and clear() keeps the previous pass's dynamic_indices: replay steps beyond the cap
        # would be dropped silently, and the self-normalisation mean would read stale indices.
        problems.append("--train.dynamic_batch_enable: OpenRLHF's dynamic batching caps every training pass at the "
                        "on-policy step count and keeps stale micro-batch indices between passes, so the replay "
                        "update would drop samples and mis-normalise its weights; run without it")
    train_batch, ranks = args.train.batch_size, actor_data_parallel_size(args)
    if train_batch % n or (args.replay.batch_groups * n) % train_batch:
        problems.append(f"a replay update of --replay.batch_groups {args.replay.batch_groups} groups x n {n} samples "
                        f"must fill whole optimizer steps of --train.batch_size {train_batch} samples")
    # Each rank's share of an optimizer step is train_batch / ranks samples: whole micro-batches, or the ranks'
    # gradient-accumulation windows (and their collectives) fall out of step.
    if train_batch % (ranks * args.train.micro_batch_size):
        problems.append(f"--train.batch_size {train_batch} must be a multiple of --train.micro_batch_size "
                        f"{args.train.micro_batch_size} x {ranks} actor data-parallel ranks (--actor.num_nodes x "
                        "--actor.num_gpus_per_node / --ds.ring_attn_size / --ds.tensor_parallel_size)")
    # The on-policy pass must end on an optimizer-step boundary on every rank, so that the replay pass after it
    # starts on one: whole train batches, handed out as the same number of rollout micro-batches to each rank.
    rollout_samples = args.rollout.batch_size * n
    if rollout_samples % train_batch:
        problems.append(f"--rollout.batch_size {args.rollout.batch_size} x n {n} = {rollout_samples} samples must be "
                        f"whole optimizer steps of --train.batch_size {train_batch}: otherwise the on-policy update "
                        "ends inside a gradient-accumulation window and the replay update's first step mixes the two")
    elif rollout_samples % (args.rollout.micro_batch_size * ranks):
        problems.append(f"--rollout.batch_size {args.rollout.batch_size} x n {n} samples must be a multiple of "
                        f"--rollout.micro_batch_size {args.rollout.micro_batch_size} x {ranks} actor data-parallel "
                        "ranks: OpenRLHF hands each rank ceil(batches / ranks) rollout micro-batches, so an uneven "
                        "count leaves one rank short and the others waiting for it")
    if problems:  # a user's settings: the reasons, exit 2, no traceback (before Ray starts, and under DRY_RUN=1)
        print("--replay.enable cannot run with these settings:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        raise SystemExit(2)


def run_openrlhf_main(module_name: str, argv: list[str], train, extra_arguments=None) -> None:
    """Run OpenRLHF's `module_name` command line on `argv`, with `train(args)` called on the validated,
    hierarchised args instead of the module's own `train`, and `extra_arguments(parser)` added to its parser."""
    module = importlib.import_module(module_name)
    main_blocks = [node for node in ast.parse(inspect.getsource(module)).body
                   if isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"]
    if len(main_blocks) != 1:
        raise RuntimeError(f"{module_name} has no `if __name__ == '__main__':` block to take its parser from")
    main_block = compile(ast.Module(body=main_blocks[0].body, type_ignores=[]), module.__file__, "exec")

    class Parser(argparse.ArgumentParser):
        def parse_args(self, args=None, namespace=None):
            if extra_arguments is not None:
                extra_arguments(self)
            return super().parse_args(argv if args is None else args, namespace)

    argparse_with_extras = types.SimpleNamespace(**{**vars(argparse), "ArgumentParser": Parser})
    namespace = {**vars(module), "argparse": argparse_with_extras, "train": train, "__name__": "__main__"}
    exec(main_block, namespace)
