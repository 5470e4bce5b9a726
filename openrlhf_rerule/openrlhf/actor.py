"""Actor side of ReRULE on OpenRLHF: the replay update runs OpenRLHF's own `ppo_train` loop (micro-batching,
gradient accumulation, loss normalisation, KL-to-reference loss, all-reduced metrics, optimizer steps) on the
replayed `Experience`s, with `PolicyLoss` exchanged for `openrlhf_rerule.losses.replay_loss` for that pass.

The driver stages the replayed experiences before the step's `fit`; `fit` then runs the on-policy update and the
replay update back to back, so that under `--ds.enable_sleep` both share OpenRLHF's one reload/offload window.
"""

import math
import os
import re
import shutil
import time

import ray
import torch

from openrlhf_rerule.losses import replay_loss, replay_weight_sum
from openrlhf_rerule.openrlhf.args import replay_config_from_args
from openrlhf_rerule.openrlhf.compat import import_openrlhf
from openrlhf_rerule.provenance import write_model_record
from openrlhf_rerule.replay import ReplayConfig

import_openrlhf()
from openrlhf.models.utils import masked_mean  # noqa: E402
from openrlhf.trainer.ray.ppo_actor import ActorPPOTrainer, PolicyModelActor  # noqa: E402

ROTATED_OUT = "_rotated_out"  # beside <ckpt.path>/_actor: checkpoints being deleted (see rotate_out)


class ReplayLoss:
    """`PolicyLoss`'s call signature and return tuple around `replay_loss`, so `training_step` takes it as is.

    Behaviour policy mu = the experience's `action_log_probs` (the trainer's, stored at collection time) or, with
    `behaviour="rollout"`, its `rollout_log_probs` (vLLM's). The KL term is not computed here: `training_step` adds
    OpenRLHF's own KL loss from `base_action_log_probs`, which for a replayed experience are the stored reference
    log-probs, times the kl_ctl that `replay_train` passes.
    """

    def __init__(self, config: ReplayConfig):
        self.config = config
        self.metrics: dict = {}
        self.weight_mean: float | None = None  # over the whole replay batch, set by replay_train before the pass

    def __call__(self, log_probs, old_log_probs, advantages, action_mask=None, rollout_log_probs=None, dp_size=1,
                 batch_num_tokens=None, global_batch_size=None):
        cfg = self.config
        behaviour = rollout_log_probs if cfg.behaviour == "rollout" else old_log_probs
        # OpenRLHF normalises each micro-batch by the optimizer step's global count times dp_size (loss_utils);
        # replay_loss divides by `normalizer`, so hand it that count over dp_size.
        count = batch_num_tokens if cfg.loss_level == "token" else global_batch_size
        normalizer = None if count is None else float(count) / dp_size
        loss, self.metrics = replay_loss(
            log_probs, behaviour, advantages, action_mask, mode=cfg.loss_mode, level=cfg.loss_level,
            clip_low=cfg.clip_low, clip_high=cfg.clip_high, is_cap=cfg.is_cap, self_normalize=cfg.self_normalize,
            weight_mean=self.weight_mean,
            # Parameters change only at optimizer steps, so this micro-batch's own detached log-probs are the
            # proximal policy of the decoupled mode (the policy at the start of this optimizer step).
            proximal_logprobs=log_probs.detach(), normalizer=normalizer)
        clip_ratio = torch.tensor(self.metrics["clip_frac"], device=log_probs.device)
        behaviour_kl = masked_mean(-(log_probs - behaviour).detach(), action_mask, dim=None)
        return cfg.coef * loss, clip_ratio, behaviour_kl, None, None


class ReplayActorPPOTrainer(ActorPPOTrainer):
    """OpenRLHF's ActorPPOTrainer plus the replay pass. It adds methods only (no state of its own besides
    `replay_loss_fn` and a micro-batch count), which is what lets `ReplayPolicyModel` adopt the instance OpenRLHF
    built."""

    replay_loss_fn: ReplayLoss
    micro_batches_trained: int  # training_step calls = DeepSpeed micro-steps (engine.step() once per micro-batch)

    def replay_train(self, kl_ctl: float) -> dict:
        cfg = self.replay_loss_fn.config
        window = self.strategy.accumulated_gradient
        if self.micro_batches_trained % window:
            # DeepSpeed's micro-step count carries over from fit to fit: the replay pass would share its first
            # optimizer step with on-policy micro-batches, and every later step would straddle two batches.
            raise RuntimeError(
                f"the replay update would start inside a gradient-accumulation window ({self.micro_batches_trained} "
                f"micro-batches trained so far, {window} per optimizer step): an on-policy batch had fewer samples "
                "than --rollout.batch_size x --rollout.n_samples_per_prompt (a partial last batch of the prompts, "
                "or filtering). Use a prompt count that is a multiple of --rollout.batch_size.")
        self.replay_loss_fn.weight_mean = self.replay_weight_mean() if cfg.normalises_weights else None
        on_policy_loss_fn, self.actor_loss_fn = self.actor_loss_fn, self.replay_loss_fn
        # The LR schedule is sized for the on-policy steps: a replay optimizer step must not advance it.
        # (DeepSpeed's engine.step() steps the very object OpenRLHF holds as actor_scheduler.)
        self.actor_scheduler.step = lambda *args, **kwargs: None
        try:
            # coef scales the whole replay objective: ReplayLoss scales the policy term, kl_ctl the KL term.
            return self.ppo_train(kl_ctl * cfg.coef if cfg.kl else 0.0)
        finally:
            del self.actor_scheduler.step
            self.actor_loss_fn = on_policy_loss_fn

    @torch.no_grad()
    def replay_weight_mean(self) -> float:
        """Mean behaviour weight over the whole replay batch (all micro-batches, all data-parallel ranks), from a
        no-grad pass of the policy the replay update starts from, so that self-normalisation is exact."""
        cfg, buffer = self.replay_loss_fn.config, self.replay_buffer
        device = torch.cuda.current_device()
        total = count = 0.0
        for start in range(0, len(buffer), self.micro_train_batch_size):
            experience = buffer.collate_fn([buffer[i] for i in range(start, min(start + self.micro_train_batch_size,
                                                                                 len(buffer)))])
            experience.to_device(device)
            log_probs = self.actor(experience.sequences, experience.action_mask,
                                   attention_mask=experience.attention_mask,
                                   ring_attn_group=self.strategy.ring_attn_group)
            behaviour = experience.rollout_log_probs if cfg.behaviour == "rollout" else experience.action_log_probs
            chunk_total, chunk_count = replay_weight_sum(
                log_probs, behaviour, experience.action_mask, mode=cfg.loss_mode, level=cfg.loss_level,
                clip_low=cfg.clip_low, clip_high=cfg.clip_high, is_cap=cfg.is_cap)
            total, count = total + chunk_total, count + chunk_count
        summed = self.strategy.all_reduce({"total": total, "count": count}, op="sum")
        return summed["total"] / max(summed["count"], 1.0)

    def training_step(self, experience, kl_ctl, step, loss_batch_info=None):
        status = super().training_step(experience, kl_ctl, step, loss_batch_info)
        self.micro_batches_trained += 1
        if self.actor_loss_fn is self.replay_loss_fn:
            # IS weight / ESS / ratio / clip metrics of replay_loss join OpenRLHF's all-reduced metrics. A mean over
            # tokens is weighted by the micro-batch's tokens, so that the pass's logged value is the mean over all
            # its tokens: `is_weight_mean` is then exactly 1 where the policy did not move during the pass.
            token_means = {"clip_frac", "zero_adv_frac"}
            if self.replay_loss_fn.config.loss_level == "token":
                token_means |= {"is_weight_mean", "ratio_mean"}
            for key, value in self.replay_loss_fn.metrics.items():
                status["metrics"][key] = torch.tensor(float(value))
                status["weights"][key] = "token" if key in token_means else "sample"
        return status


class RecordingPolicyModel(PolicyModelActor.__ray_actor_class__):
    """OpenRLHF's PolicyModelActor that also writes rerule_model.json (the record our entry point built before Ray
    started, `args.rerule_record`, plus `steps`) into every model folder it saves: --ckpt.output_dir, and each
    checkpoint's DeepSpeed folder (<ckpt.path>/_actor/<tag>) and HF copy (<tag>_hf). Rank 0 only, after OpenRLHF's
    own save, which ends in a barrier of all ranks: the folder is complete, and no collective is added."""

    steps_trained = 0  # fit calls of this process: one per global step (resumed runs add the checkpoint's step)

    def fit(self, kl_ctl: float = 0) -> dict:
        status = super().fit(kl_ctl)
        self.steps_trained += 1
        return status

    def save_model(self) -> None:
        super().save_model()
        args = self.strategy.args
        if self.strategy.is_rank_0():
            steps = self.checkpoint_states.get("global_step", 0) + self.steps_trained
            write_model_record(args.ckpt.output_dir, {**args.rerule_record, "steps": steps})

    def save_checkpoint(self, tag, client_states=None, metric_value=None, metric_key=None):
        # OpenRLHF's strategy.save_ckpt deletes the checkpoint it rotates out *before* DeepSpeed writes the new one,
        # so under --ckpt.max_num 1 a kill during a save left no complete checkpoint (`latest` naming a deleted
        # folder). Here at most max_num others are left before the save (so save_ckpt, given one slot more, deletes
        # none), and the one it would have deleted goes once the new one is complete. Rank 0 only: the other ranks
        # wait at save_ckpt's barrier, which comes before any write.
        args = self.strategy.args
        save_dir, max_num = os.path.join(args.ckpt.path, "_actor"), args.ckpt.max_num
        rotating = self.strategy.is_rank_0() and not self.disable_ds_ckpt and not tag.startswith("best")
        if rotating:  # an interrupted save's leftover (the run resumed from the checkpoint before it) takes no slot
            self.rotate_out(save_dir, tag, keep=max_num, also_tag=True)
        args.ckpt.max_num = max_num + 1
        try:
            super().save_checkpoint(tag, client_states, metric_value, metric_key)
        finally:
            args.ckpt.max_num = max_num
        if rotating:
            self.rotate_out(save_dir, tag, keep=max_num - 1)
        if self.strategy.is_rank_0():
            for folder in (os.path.join(args.ckpt.path, "_actor", tag), os.path.join(args.ckpt.path, f"{tag}_hf")):
                if os.path.isdir(folder):  # (no DeepSpeed folder under --ckpt.disable_ds, no HF one without save_hf)
                    write_model_record(folder, {**args.rerule_record, "steps": int(tag.rsplit("step", 1)[1])})

    def rotate_out(self, save_dir: str, tag: str, keep: int, also_tag: bool = False) -> None:
        """Delete all but `keep` of the regular checkpoints other than `tag` (and `tag` itself with `also_tag`), in
        save_ckpt's order (openrlhf/utils/deepspeed/deepspeed.py): no metric, worst metric, oldest. Oldest by step,
        not by modification time, which a killed deletion or a copy changes; a later step than `tag` (an abandoned
        run's) counts as the oldest. Each is renamed out of `save_dir` before its files go: a kill leaves it whole
        or gone, and what a killed deletion left is cleared first."""
        tag_step = int(tag.rsplit("step", 1)[1])

        def step(path):
            found = re.fullmatch(r"global_step(\d+)", os.path.basename(path))
            return -1 if found is None or int(found[1]) > tag_step else int(found[1])

        trash = os.path.join(os.path.dirname(save_dir), ROTATED_OUT)
        shutil.rmtree(trash, ignore_errors=True)
        # (No folder: before the first save, or the save went to another node's disk, which the driver reports.)
        older = [os.path.join(save_dir, d) for d in os.listdir(save_dir) if d != tag and not d.startswith("best")
                 and os.path.isdir(os.path.join(save_dir, d))] if os.path.isdir(save_dir) else []
        metric = {path: self.strategy._read_ckpt_metric(path) for path in older}
        older.sort(key=lambda p: (metric[p] is not None, -math.inf if metric[p] is None else metric[p], step(p)))
        doomed = older[:max(0, len(older) - keep)]
        if also_tag and os.path.isdir(os.path.join(save_dir, tag)):
            doomed.append(os.path.join(save_dir, tag))
        for path in doomed:
            os.makedirs(trash, exist_ok=True)
            os.rename(path, os.path.join(trash, os.path.basename(path)))
            shutil.rmtree(trash)
            self.strategy.print(f"Deleted checkpoint {path}" + (" (an interrupted save's)" if os.path.basename(path)
                                                                 == tag else f" (rotated out for {tag})"))


RecordingPolicyModelActor = ray.remote(num_gpus=1)(RecordingPolicyModel)


class ReplayPolicyModel(RecordingPolicyModel):
    """OpenRLHF's PolicyModelActor (recording); `fit` also runs the replay update on experiences staged by the
    driver."""

    def init_model_from_pretrained(self, *args, **kwargs):
        super().init_model_from_pretrained(*args, **kwargs)
        self.enable_replay()

    def enable_replay(self) -> None:
        # OpenRLHF constructs ActorPPOTrainer inline in init_model_from_pretrained (after DeepSpeed and the vLLM
        # weight-sync group are set up); we adopt that very instance rather than building a second one.
        self.trainer.__class__ = ReplayActorPPOTrainer
        self.trainer.replay_loss_fn = ReplayLoss(replay_config_from_args(self.strategy.args))
        self.trainer.micro_batches_trained = 0
        self.staged_replay = []

    def stage_replay(self, experience) -> None:
        """Called through `async_run_method_batch`, like `append`: this rank's share of the replay batch."""
        self.staged_replay.append(experience)

    def fit(self, kl_ctl: float = 0) -> dict:
        status = super().fit(kl_ctl)  # the on-policy update, exactly OpenRLHF's
        if self.staged_replay:
            status.update(self.fit_replay(kl_ctl))
        return status

    def fit_replay(self, kl_ctl: float = 0) -> dict:
        """One off-policy update on the staged replay experiences (mirrors `fit`)."""
        started = time.time()
        for experience in self.staged_replay:
            self.trainer.replay_buffer.append(experience)
        self.staged_replay = []
        self.actor.train()
        status = self.trainer.replay_train(kl_ctl)
        self.trainer.replay_buffer.clear()
        torch.cuda.empty_cache()
        out = {f"replay/{key}": value for key, value in status.items()}
        out["replay/update_seconds"] = time.time() - started
        return out


ReplayPolicyModelActor = ray.remote(num_gpus=1)(ReplayPolicyModel)
