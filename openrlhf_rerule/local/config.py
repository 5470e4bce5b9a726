"""Configuration of the embedded backend: one dataclass per stage, and command-line flags derived from their
fields (so a flag, its config field and its default can never drift apart).

`--lr 1e-4` sets `Stage2Config.lr`; `--replay.threshold 0.6` sets `Stage2Config.replay.threshold`
(`openrlhf_rerule.replay.ReplayConfig`, the same object the OpenRLHF adapter uses)."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field

from openrlhf_rerule.lineage import FORMAT_HELP
from openrlhf_rerule.replay import ReplayConfig


CHAT_TEMPLATES = ("auto", "none")  # --chat_template: local/rollout.py format_prompt

# Help text of every stage flag (the replay flags take theirs from openrlhf_rerule.replay.config.HELP).
HELP = {
    "model": "HF causal-LM directory to start from (Stage 2: the Stage 1 checkpoint)",
    "data": "jsonl; Stage 1: {prompt, response} (or {text}); Stage 2: {prompt, label, prompt_id, kind}",
    "out": "run directory: metrics.jsonl, reward_history.jsonl, tensorboard/, checkpoints/, final/",
    "seed": "seeds python, numpy, torch and the data sampler",
    "device": "auto (cuda if available, else cpu) | cpu | cuda | cuda:1 ...",
    "cpu_threads": "torch.set_num_threads; 0 keeps torch's default (a tiny model runs fastest with 1)",
    "lr": "AdamW learning rate (Stage 1: warm-up + cosine to 10%; Stage 2: constant)",
    "weight_decay": "AdamW weight decay",
    "adam_betas": "AdamW betas, comma-separated",
    "grad_clip": "max global gradient norm; <= 0 disables clipping",
    "micro_batch_size": "sequences per forward/backward; the loss stays a token mean over the whole batch",
    "save_every": "checkpoint every k steps (0: no periodic checkpoints; OUT/final is always written)",
    "keep_checkpoints": "how many checkpoints to keep",
    "resume": "auto (OUT/checkpoints/latest, or a fresh start when there is none) or a checkpoint directory",
    "overwrite": "reuse a non-empty --out that holds no run to resume: delete the previous run's checkpoints/, "
                 "final/, logs and tensorboard/ first (without it such a directory is refused)",
    "allow_config_change": "resume although settings that shape the run (seed, lr, data, ...) differ from the "
                           "checkpoint's (each difference is printed); without it such a resume is refused",
    "stop_after": "checkpoint and exit after this step, as a kill would (for resume tests); 0: off",
    "tensorboard": "write OUT/tensorboard",
    "wandb_project": "also log to this W&B project (or set RERULE_WANDB_PROJECT)",
    "progress": "tqdm progress bars",
    "chat_template": "prompt format: auto (the user turn in the tokenizer's chat template when it has one) | none (the "
                     "raw prompt text, as PURGE's authors train and sample with TRL); evaluate with the same "
                     "`rerule eval --chat_template`",
    "input_template": "with --chat_template none: each prompt as this text, {} standing for the prompt (OpenRLHF's "
                      "--data.input_template), e.g. TOFU's Llama-2 '[INST] {} [/INST]'; the model's record keeps it, "
                      "and `rerule eval tofu --prompt_template` is checked against it",
    "epochs": "passes over the data (fractions allowed)",
    "batch_size": "sequences per optimiser step",
    "max_len": "prompt + response tokens; longer responses are cut (how many is printed; a response losing more "
               "than half its tokens is refused unless --allow_truncation). RULE used 640 (MUSE), 512 (RWKU)",
    "allow_truncation": "train on rows whose response loses more than half its tokens to --max_len",
    "check_reward_target": "two_stage_abs_target: refuse when the tokenizer cannot give the <reject> target back "
                           "or fewer than 10% of forget prompts name it (--no_check_reward_target: train anyway)",
    "warmup_ratio": "fraction of the steps with linear learning-rate warm-up",
    "ref_model": "frozen KL reference (default: --model); its tokenizer must be the policy's",
    "allow_format_change": FORMAT_HELP,
    "steps": "Stage 2 steps (each: one rollout batch, one on-policy update, at most one replay update)",
    "rollout_batch": "prompts per step",
    "n_samples": "responses per prompt (the GRPO group)",
    "max_new_tokens": "response length limit",
    "temperature": "sampling temperature (log-probs use the same temperature)",
    "top_p": "nucleus sampling",
    "kl_coef": "weight of the KL-to-reference loss term (0: no reference model is loaded)",
    "kl_estimator": "k1 | k2 | k3 (k3: the low-variance estimator)",
    "clip_low": "on-policy PPO ratio clip: 1 - clip_low",
    "clip_high": "on-policy PPO ratio clip: 1 + clip_high",
    "reward_variant": "RULE reward: two_stage_abs_target (RWKU) | two_stage_abs (MUSE); PURGE reward: purge_binary "
                      "(1 if the completion names none of the label's forbidden terms) | purge_exp_decay (e^-m for m "
                      "mentions, repeats counted: the authors' graded reward) | purge_pagerank (1 - the PageRank "
                      "weights of the terms found, clamped to [0, 1]; labels of `rerule data purge stage2 --weights`)",
    "purge_boundary": "PURGE term matching: word (the authors' \\b...\\b) | edge (no word character touching "
                      "the term; also finds terms ending in punctuation such as 'C++') | none (substring)",
    "purge_case_sensitive": "PURGE: match terms case-sensitively (the authors ignore case)",
    "refusal_mode": "refusal detector: rule (the authors' regex) | strict",
}


@dataclass
class CommonConfig:
    model: str = ""
    data: str = ""
    out: str = ""
    seed: int = 0
    device: str = "auto"
    cpu_threads: int = 0
    lr: float = 1e-5
    weight_decay: float = 0.0
    adam_betas: str = "0.9,0.95"
    grad_clip: float = 1.0
    micro_batch_size: int = 16
    save_every: int = 0
    keep_checkpoints: int = 2
    resume: str = ""
    overwrite: bool = False
    allow_config_change: bool = False
    stop_after: int = 0
    tensorboard: bool = True
    wandb_project: str = ""
    progress: bool = True
    chat_template: str = "auto"
    input_template: str = ""


@dataclass
class Stage1Config(CommonConfig):
    """Supervised fine-tuning; the loss covers response tokens only (every token after the first for {text} rows)."""
    lr: float = 1e-4
    epochs: float = 3.0
    batch_size: int = 32
    max_len: int = 256
    warmup_ratio: float = 0.0
    allow_truncation: bool = False


@dataclass
class Stage2Config(CommonConfig):
    """GRPO on forget (`<reject>`) + boundary (`<normal>`) prompts, or on PURGE's `<purge>` prompts, with hard-case
    replay when replay.enable."""
    ref_model: str = ""
    steps: int = 30
    rollout_batch: int = 32
    n_samples: int = 8
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    kl_coef: float = 1e-2
    kl_estimator: str = "k3"
    clip_low: float = 0.2
    clip_high: float = 0.2
    reward_variant: str = "two_stage_abs_target"
    refusal_mode: str = "rule"
    purge_boundary: str = "word"
    purge_case_sensitive: bool = False
    check_reward_target: bool = True
    allow_format_change: bool = False
    replay: ReplayConfig = field(default_factory=ReplayConfig)


def parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


REQUIRED = ("model", "data", "out")


def add_dataclass_args(parser: argparse.ArgumentParser, cls, helps: dict | None = None,
                       choices: dict | None = None) -> None:
    """One flag per field of a stage config (the nested ReplayConfig gets its flags from
    `openrlhf_rerule.replay.config.add_replay_arguments`). Booleans are switches as in OpenRLHF (`--x`; one that
    defaults to on is turned off with `--no_x`); `--x false` is accepted too. Every stage field is a plain
    bool / int / float / str; `--help` shows the defaults (openrlhf_rerule.cli_convention.HelpFormatter)."""
    helps, choices = helps or {}, choices or {}
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        text = helps.get(f.name, "").replace("%", "%%")  # argparse %-formats help
        if tp is bool:
            group.add_argument(f"--{f.name}", type=parse_bool, nargs="?", const=True, default=default,
                               dest=f.name, metavar="BOOL", help=text + f" (default: {'on' if default else 'off'})")
            if default:
                group.add_argument(f"--no_{f.name}", action="store_false", dest=f.name, help=f"turn off --{f.name}")
            continue
        required = f.name in REQUIRED
        group.add_argument(f"--{f.name}", type=tp, default=None if required else default, dest=f.name,
                           required=required, help=text or None, choices=choices.get(f.name),
                           metavar=f.name.upper() if choices.get(f.name) is None else None)


def build_config(cls, ns: argparse.Namespace):
    """Stage1Config / Stage2Config from parsed flags; Stage 2's replay section honours `--replay.preset`."""
    values = vars(ns)
    own = {f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values}
    if cls is Stage2Config:
        overrides = {k[len("replay."):]: v for k, v in values.items()
                     if k.startswith("replay.") and k != "replay.preset"}
        preset = values.get("replay.preset")
        own["replay"] = ReplayConfig.preset(preset, **overrides) if preset else ReplayConfig(**overrides)
    return cls(**own)


def config_to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)

