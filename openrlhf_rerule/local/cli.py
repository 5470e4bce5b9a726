"""`rerule train stage1 ...` and `rerule train stage2 ... [--replay.enable ...]`: the embedded backend's
command line. Every flag is a field of Stage1Config / Stage2Config / ReplayConfig (see config.py)."""

from __future__ import annotations

import sys

from openrlhf_rerule.cli_convention import Parser, UserError, user_errors
from openrlhf_rerule.replay.config import PAPER_PRESETS, add_replay_arguments
from openrlhf_rerule.rewards.purge import BOUNDARIES
from openrlhf_rerule.rewards.refusal import MODES
from openrlhf_rerule.rewards.variants import REWARD_VARIANTS

from .config import CHAT_TEMPLATES, HELP, Stage1Config, Stage2Config, add_dataclass_args, build_config

EXAMPLES = """examples:
  rerule train stage1 --model runs/base --data data/stage1.jsonl --out runs/stage1 --epochs 3 --lr 1e-4
  rerule train stage2 --model runs/stage1/final --data data/stage2.jsonl --out runs/rule --steps 30
  rerule train stage2 --model runs/stage1/final --data data/stage2.jsonl --out runs/rerule --steps 30 \\
      --replay.enable --replay.threshold 0.6 --replay.min_groups 16 --replay.warmup_steps 4
  rerule train stage2 ... --replay.preset rwku          (the paper's Appendix D setting; flags override it)
  rerule train stage2 ... --resume auto                 (continue from OUT/checkpoints/latest)
  rerule train stage2 --model runs/base --data data/purge/stage2.jsonl --out runs/purge --reward_variant purge_binary

Flags use underscores as in OpenRLHF; the hyphen spelling (--micro-batch-size) is accepted too.
Everything (flags, device, model directory, data) is checked before a model is loaded; a mistake is one line
on stderr with exit code 2 (--debug shows the traceback). A non-empty --out is refused unless --resume or
--overwrite says what to do with it.
"""


def build_parser() -> Parser:
    parser = Parser(prog="rerule train", description="Embedded (one-process) training backend", epilog=EXAMPLES)
    stages = parser.add_subparsers(dest="stage", required=True)
    s1 = stages.add_parser("stage1", help="refusal SFT (loss on answer tokens only)")
    add_dataclass_args(s1, Stage1Config, helps=HELP, choices={"chat_template": CHAT_TEMPLATES})
    s2 = stages.add_parser("stage2", help="GRPO with the RULE reward; --replay.enable for ReRULE")
    add_dataclass_args(s2, Stage2Config, helps=HELP, choices={"kl_estimator": ("k1", "k2", "k3"),
                                                              "reward_variant": REWARD_VARIANTS, "refusal_mode": MODES,
                                                              "purge_boundary": BOUNDARIES,
                                                              "chat_template": CHAT_TEMPLATES})
    s2.add_argument("--replay.preset", choices=sorted(PAPER_PRESETS), default=None,
                    help="start from the paper's setting for this benchmark (enables replay)")
    # Replay flags left unset stay out of the namespace, so a preset's values are not overwritten by defaults.
    add_replay_arguments(s2, suppress_defaults=True)
    return parser


@user_errors("rerule train")
def main(argv=None) -> int:
    ns = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    cls = Stage1Config if ns.stage == "stage1" else Stage2Config
    try:
        cfg = build_config(cls, ns)
    except ValueError as e:  # ReplayConfig's own validation (ranges, min_groups <= capacity, ...)
        raise UserError(str(e)) from None
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()  # weight loading/saving bars would drown the training bar
    if ns.stage == "stage1":
        from .sft import train_stage1
        path = train_stage1(cfg)
    else:
        from .grpo import train_stage2
        path = train_stage2(cfg)
    print(f"saved to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
