"""rerule_model.json on the OpenRLHF path: what our entry points record in the model folders OpenRLHF saves, and the
Stage 2 checks of openrlhf_rerule/lineage.py on OpenRLHF's flags, run before Ray starts (and by DRY_RUN's
check_args). The record is built here, in the launching process, from the files the checks read; the processes
that save a model (train_sft's rank 0, the policy actor's rank 0) only add `steps` and write it.

OpenRLHF's vocabulary for the prompt format maps onto the embedded one: `--data.apply_chat_template` is
chat_template "auto" (the tokenizer's own template, which then overrides any input template), otherwise "none",
with `--data.input_template` recorded as input_template (train_sft's default is "User: {}\nAssistant: ", so a
Stage 1 given neither flag is recorded with that template; train_ppo_ray's default is none: the raw prompt).
`--data.tokenizer_chat_template` (a template other than the tokenizer's) is not compared.
"""

import os
import sys
from dataclasses import asdict
from pathlib import Path

from openrlhf_rerule.cli_convention import UserError
from openrlhf_rerule.lineage import FORMAT_FLAG, check_stage2, stage_fields

from .whole_batches import dataset_paths, prompts_per_episode


def data_flags(data, datasets) -> tuple[list[str], dict]:
    """OpenRLHF's data flags (`args.data`) in the record's terms: the local files of the dataset list, and the prompt
    format (the one mapping of OpenRLHF's flags, for both stages)."""
    chat = bool(data.apply_chat_template)
    return ([str(path) for path in dataset_paths(datasets) if path.is_file()],
            {"chat_template": "auto" if chat else "none", "input_template": None if chat else data.input_template})


def stage1_record(args) -> dict:
    """The record of `openrlhf_rerule.cli.train_sft` (OpenRLHF's train_sft, recorded); no check: Stage 1 sets the
    format its model is trained in."""
    files, fields = data_flags(args.data, args.data.dataset)
    if args.model.pretrain_mode_enable:  # whole texts: no prompt is wrapped in anything
        fields["chat_template"] = None
    try:  # every rank reads the same files, so every rank stops alike: no collective is left waiting
        lineage = stage_fields(args.model.model_name_or_path, files)
    except UserError as e:
        print(f"openrlhf_rerule.cli.train_sft: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    return {"made_by": "openrlhf train_sft", "stage": 1, "algorithm": "sft", **lineage, **fields, "overrides": [],
            "settings": {"lr": args.adam.lr, "epochs": args.train.max_epochs, "batch_size": args.train.batch_size,
                         "max_len": args.data.max_len, "seed": args.train.seed, "max_samples": args.data.max_samples}}


def stage2_record(args) -> dict:
    """Checks (a), (b), (c) of lineage.py on the train_ppo_ray flags (exit 2 with one line on a mismatch), and the
    record the policy actor writes. OpenRLHF 0.11.2 loads its reference from --actor.model_name_or_path (the same
    folder: nothing to compare); a reward or critic model reads the policy's token ids, so those are compared."""
    from openrlhf_rerule.rewards.openrlhf_reward import DEFAULT_VARIANT

    from .args import replay_config_from_args

    policy, (files, fields) = args.actor.model_name_or_path, data_flags(args.data, args.data.prompt_dataset)
    setting = ("--data.apply_chat_template" if fields["chat_template"] == "auto" else
               f"--data.input_template {fields['input_template']!r}" if fields["input_template"] else
               "neither --data.apply_chat_template nor --data.input_template")
    # the models OpenRLHF's train() loads besides the policy (a reward model only without --reward.remote_url; a
    # critic only for gae, where its parser defaults it to the reward model or the actor)
    references = [("--critic.model_name_or_path", args.critic.model_name_or_path)] if args.critic.model_name_or_path \
        else []
    if not args.reward.remote_url:
        references += [("--reward.model_name_or_path", path.strip())
                       for path in str(args.reward.model_name_or_path or "").split(",") if path.strip()]
    try:
        checked = check_stage2(policy, files, fields["chat_template"], fields["input_template"], setting, references,
                               args.allow_format_change, model_flag="--actor.model_name_or_path")
    except UserError as e:
        print(f"openrlhf_rerule.cli.train_ppo_ray: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    reference = policy if args.algo.kl.init_coef > 0 else None
    return {"made_by": "openrlhf_rerule train_ppo_ray", "stage": 2, **checked,
            "algorithm": args.algo.advantage.estimator + ("+replay" if args.replay.enable else ""),
            "reward_variant": os.environ.get("RERULE_REWARD_VARIANT", DEFAULT_VARIANT),
            "reward_remote_url": args.reward.remote_url,
            "reference_model": str(Path(reference).resolve()) if reference and Path(reference).is_dir() else reference,
            **fields, "rows": prompts_per_episode(args)[0],
            "overrides": [FORMAT_FLAG] if args.allow_format_change else [],
            "settings": {"lr": args.actor.adam.lr, "n_samples_per_prompt": args.rollout.n_samples_per_prompt,
                         "rollout_batch_size": args.rollout.batch_size, "train_batch_size": args.train.batch_size,
                         "max_new_tokens": args.rollout.max_new_tokens, "temperature": args.rollout.temperature,
                         "kl_init_coef": args.algo.kl.init_coef, "kl_estimator": args.algo.kl.estimator,
                         "seed": args.train.seed, "num_episodes": args.train.num_episodes,
                         "max_samples": args.data.max_samples},
            "replay": asdict(replay_config_from_args(args)) if args.replay.enable else None}
