"""`python -m openrlhf_rerule.cli.train_ppo_ray` (or `-m openrlhf_rerule.openrlhf.train_ppo_ray`): OpenRLHF
0.11.2's `openrlhf.cli.train_ppo_ray`, plus `--replay.*` and `--allow_format_change`.

Before Ray starts: the labels fit the reward, whole rollout batches only, and the model records agree with the run
(records.stage2_record: tokenizers, prompt format; exit 2 with one line otherwise), and a resumed run's checkpoint
is there (resume.py).
Without `--replay.enable` it is OpenRLHF's own `train(args)` with one class exchanged: the policy actor
(`RecordingPolicyModelActor`), which only adds rerule_model.json to the folders it saves. The RULE baseline is
vanilla GRPO (on whole rollout batches only, as RULE's own trainer: `whole_batches.py`).
With it, the driver-side trainer is exchanged too (`ReplayPPOTrainer`, which owns the replay buffer), and the policy
actor is `ReplayPolicyModelActor` (the recording actor that also applies the replay loss).
"""

import sys
from unittest import mock

from .args import add_stage2_arguments, check_replay_compatible, replay_config_from_args, run_openrlhf_main
from .compat import import_openrlhf
from .records import stage2_record
from .resume import check_resumable
from .reward_labels import check_reward_labels
from .whole_batches import whole_batches


def train(args) -> None:
    import openrlhf.cli.train_ppo_ray as upstream
    import openrlhf.trainer.ppo_trainer as ppo_trainer

    check_reward_labels(args)  # a label the reward variant cannot score would train on zeros: refused (exit 2)
    whole_batches(args)  # both arms: no step on a short rollout batch (lowers --data.max_samples, says so)
    check_resumable(args)  # --ckpt.load_enable: the checkpoint `latest` names is there (exit 2 otherwise)
    if args.replay.enable:
        check_replay_compatible(args)
        replay_config_from_args(args)  # fail on a bad value here, before Ray starts anything
    # the record the policy actor's rank 0 writes into every folder it saves; Ray hands args to every actor
    args.rerule_record = stage2_record(args)

    from .actor import RecordingPolicyModelActor, ReplayPolicyModelActor
    if not args.replay.enable:
        with mock.patch.object(upstream, "PolicyModelActor", RecordingPolicyModelActor):
            upstream.train(args)
        return
    from .trainer import ReplayPPOTrainer

    # upstream.train names both classes directly (one at module level, one imported inside the function);
    # exchanging them for this call keeps all of its 150 lines of Ray / vLLM / placement logic OpenRLHF's.
    with mock.patch.object(upstream, "PolicyModelActor", ReplayPolicyModelActor), \
            mock.patch.object(ppo_trainer, "PPOTrainer", ReplayPPOTrainer):
        upstream.train(args)


def main(argv=None) -> None:
    import_openrlhf()
    run_openrlhf_main("openrlhf.cli.train_ppo_ray", list(sys.argv[1:] if argv is None else argv), train=train,
                      extra_arguments=add_stage2_arguments)


if __name__ == "__main__":
    main()
