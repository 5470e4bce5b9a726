"""Driver side of ReRULE on OpenRLHF: the replay buffer lives here, in the single PPOTrainer process, so every
data-parallel rank gets the same readiness decision and the same replayed groups.

One step of `BasePPOTrainer.train_step`, with our three hooks marked (*):
    make_experience_batch  -> rewards, log-probs, group_norm advantages
      (*) capture: ReplayExperienceMaker copies the step's groups      (dynamic filtering already ran upstream,
                                                                         see args.check_replay_compatible)
    actor append + ppo_train
      (*) ReplayPPOTrainer.ppo_train: admit, then, once ready, stage the sampled groups on the actors; the
          actors' fit runs OpenRLHF's on-policy update and then the replay update (fit_replay) in one reload
          window -- before the weights go to vLLM, so one broadcast covers both
    broadcast_to_vllm, logging through OpenRLHF's own TensorBoard / W&B loggers (replay/*, timing/replay)
      (*) save_logs_and_checkpoints / init_checkpoint_states: the buffer is saved before every checkpoint
"""

import os
import time

import ray
import torch

from openrlhf_rerule.atomic import atomic_path
from openrlhf_rerule.openrlhf.args import actor_data_parallel_size, replay_config_from_args
from openrlhf_rerule.openrlhf.compat import import_openrlhf
from openrlhf_rerule.openrlhf.experience import capture_rollout, experiences_from_groups
from openrlhf_rerule.replay import HardCaseReplayBuffer, groups_from_batch

import_openrlhf()
from openrlhf.trainer.ppo_trainer import PPOTrainer  # noqa: E402
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker  # noqa: E402
from openrlhf.utils.logging_utils import init_logger  # noqa: E402

logger = init_logger(__name__)


class ReplayExperienceMaker(RemoteExperienceMaker):
    """OpenRLHF's experience maker; also keeps a copy of each batch's groups for the replay buffer."""

    captured: dict | None = None

    def make_experience_batch(self, rollout_samples):
        experiences = super().make_experience_batch(rollout_samples)
        # Rewards, behaviour / reference log-probs and advantages are all known here, and nothing was dropped
        # since generation: the earliest point where a group is complete.
        self.captured = capture_rollout(experiences, self.args.rollout.n_samples_per_prompt)
        return experiences


class ReplayTrainer(PPOTrainer.__ray_actor_class__):
    """OpenRLHF's PPOTrainer (the Ray driver) with the hard-case replay buffer."""

    def __init__(self, pretrain, strategy, actor_model_group, critic_model_group, reward_model_group,
                 reference_model_group, vllm_engines, **generate_kwargs):
        super().__init__(pretrain, strategy, actor_model_group, critic_model_group, reward_model_group,
                         reference_model_group, vllm_engines, **generate_kwargs)
        self.init_replay()

    def init_replay(self) -> None:
        self.replay_config = replay_config_from_args(self.args)
        self.replay_buffer = HardCaseReplayBuffer(self.replay_config)
        # Same arguments as BasePPOTrainer.__init__ gives OpenRLHF's experience maker.
        self.experience_maker = ReplayExperienceMaker(
            self.actor_model_group, self.critic_model_group, self.reward_model_group, self.reference_model_group,
            self.kl_ctl, self.strategy, self.tokenizer)

    def train_step(self, rollout_samples, global_step):
        status, next_step = super().train_step(rollout_samples, global_step)
        # timing/ppo_train was measured around our ppo_train, replay included; keep the phases disjoint so
        # that OpenRLHF's timing/step_total (the sum of timing/*) counts the replay once.
        status["timing/ppo_train"] -= status["timing/replay"]
        return status, next_step

    def ppo_train(self, global_steps: int) -> dict:
        started = time.time()
        step = global_steps + 1  # the step being trained, as OpenRLHF logs it
        groups = groups_from_batch(**self.experience_maker.captured, step=step)
        self.experience_maker.captured = None
        # Admission and sampling do not depend on the weights, so they run before the on-policy update: the
        # actors then do both updates inside one fit (one reload / offload window under --ds.enable_sleep).
        self.replay_buffer.admit(groups, step)
        staged = self.stage_replay(step) if self.replay_buffer.ready(step) else {}
        staging_seconds = time.time() - started
        status = super().ppo_train(global_steps)  # the on-policy GRPO update, exactly OpenRLHF's; then the replay
        status.update(staged)
        status.update({f"replay/{key}": value for key, value in self.replay_buffer.stats(step).items()})
        status["replay/active"] = float("replay/groups" in staged)
        status["replay/step_zero_variance_frac"] = sum(g.zero_variance for g in groups) / len(groups)
        status["timing/replay"] = staging_seconds + status.pop("replay/update_seconds", 0.0)
        return status

    def stage_replay(self, step: int) -> dict:
        """Sample groups and hand them to the actors as Experiences; their next `fit` trains on them."""
        # Whole optimizer steps only: a partial DeepSpeed accumulation window would leak into the next fit.
        # (Only bites while the buffer holds fewer than batch_groups groups; admit() already expired stale ones.)
        # check_replay_compatible made an optimizer step's samples split into whole micro-batches per rank, so
        # every count reached here splits into equal per-rank shares (experiences_from_groups).
        groups_per_optimizer_step = self.args.train.batch_size // self.args.rollout.n_samples_per_prompt
        available = min(self.replay_config.batch_groups, len(self.replay_buffer))
        count = available // groups_per_optimizer_step * groups_per_optimizer_step
        if count == 0:
            return {"replay/skipped": 1.0}
        groups = self.replay_buffer.sample(step, count)
        experiences = experiences_from_groups(groups, self.args.rollout.micro_batch_size,
                                              self.tokenizer.pad_token_id, step, ranks=actor_data_parallel_size(self.args))
        ray.get(self.actor_model_group.async_run_method_batch(method_name="stage_replay", experience=experiences))
        return {"replay/groups": float(len(groups))}

    def replay_checkpoint_path(self, global_step: int) -> str:
        return os.path.join(self.args.ckpt.path, "_replay", f"global_step{global_step}.pt")

    def save_logs_and_checkpoints(self, global_step, logs_dict=None, client_states=None):
        # The buffer goes first: a kill between the two saves then leaves a buffer file without its checkpoint
        # (ignored on resume, pruned by the next save) rather than a checkpoint that cannot be resumed.
        saving = global_step % self.args.ckpt.save_steps == 0  # the same condition as OpenRLHF's checkpoint
        if saving:
            self.save_replay_buffer(global_step)
        super().save_logs_and_checkpoints(global_step, logs_dict, client_states)
        if saving:
            self.prune_replay_buffers(f"global_step{global_step}")

    def save_best_checkpoint(self, eval_metrics, global_step, client_states=None):
        # Whether OpenRLHF writes a best_global_step<N> checkpoint is known only afterwards: save the buffer in
        # case, and prune it again if no checkpoint came of it.
        if eval_metrics:
            self.save_replay_buffer(global_step)
        best_before = self.best_eval_metric_value
        super().save_best_checkpoint(eval_metrics, global_step, client_states)
        if eval_metrics:
            self.prune_replay_buffers(f"best_global_step{global_step}" if self.best_eval_metric_value != best_before
                                      else None)

    def save_replay_buffer(self, global_step: int) -> None:
        path = self.replay_checkpoint_path(global_step)
        with atomic_path(path) as tmp:  # a crash leaves the previous file or the new one, never half
            torch.save(self.replay_buffer.state_dict(), tmp)
        logger.info(f"Saved the replay buffer ({len(self.replay_buffer)} groups, fingerprint "
                    f"{self.replay_buffer.fingerprint()}) to {path}")

    def prune_replay_buffers(self, written_tag: str | None) -> None:
        """Keep the buffer of every OpenRLHF checkpoint that still exists (DeepSpeed rotates them by metric).
        `written_tag` is the checkpoint just written, which this process must see: the buffer files are matched
        to checkpoints by listing <ckpt.path>/_actor, written by actor rank 0, possibly on another node."""
        actor_dir = os.path.join(self.args.ckpt.path, "_actor")
        tags = set(os.listdir(actor_dir)) if os.path.isdir(actor_dir) else set()
        if written_tag is not None and written_tag not in tags:
            raise RuntimeError(
                f"OpenRLHF saved checkpoint {written_tag} under --ckpt.path, but the trainer process does not see "
                f"{os.path.join(actor_dir, written_tag)}: with actors on several nodes --ckpt.path must be a "
                "directory shared by all of them, or the replay buffer cannot be matched to its checkpoint")
        steps = {tag.removeprefix("best_") for tag in tags}
        folder = os.path.dirname(self.replay_checkpoint_path(0))
        for name in os.listdir(folder):
            if name.endswith(".pt") and name[:-len(".pt")] not in steps:
                os.remove(os.path.join(folder, name))

    def init_checkpoint_states(self):
        states = super().init_checkpoint_states()
        if states["global_step"] > 0:  # resuming from an OpenRLHF checkpoint: restore the buffer of that step
            path = self.replay_checkpoint_path(states["global_step"])
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f"--ckpt.load_enable resumes at global step {states['global_step']}, but there is no replay "
                    f"buffer saved for that step ({path}). Was that checkpoint written without --replay.enable?")
            self.replay_buffer.load_state_dict(torch.load(path, weights_only=True))
            logger.info(f"Restored the replay buffer ({len(self.replay_buffer)} groups, fingerprint "
                        f"{self.replay_buffer.fingerprint()}) from {path}")
        return states


ReplayPPOTrainer = ray.remote(ReplayTrainer)
