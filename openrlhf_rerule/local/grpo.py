"""Stage 2: GRPO with the RULE reward, and ReRULE hard-case replay when `cfg.replay.enable`.

One step (DESIGN.md §2): sample n responses per prompt -> RULE reward -> behaviour + reference log-probs ->
group-normalised advantages -> on-policy GRPO update -> buffer.admit(every group of the step, before any
filtering) -> if buffer.ready(step): one extra off-policy update on buffer.sample(step) with the replay loss.
The algorithm itself (advantages, losses, admission, readiness, sampling) lives in openrlhf_rerule.replay and
openrlhf_rerule.losses; this file only moves tensors between them and the model."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from openrlhf_rerule.losses import grpo_policy_loss, replay_loss, replay_weight_sum
from openrlhf_rerule.replay import HardCaseReplayBuffer, StoredGroup, group_stats, groups_from_batch

from .checkpoint import load_state, rng_state, save_checkpoint, save_model_dir, set_rng_state
from .config import Stage2Config, config_to_dict
from .engine import (IndexSampler, backward_microbatches, batched_logprobs, load_model, make_optimizer,
                     optimizer_step, resolve_device, seed_everything, units)
from .metrics import MetricsLogger, Timer
from .preflight import start_run
from .rollout import decode_responses, format_prompt, pack, sample


def default_reward(cfg: Stage2Config):
    from openrlhf_rerule.rewards import make_scorer
    return make_scorer(cfg.reward_variant, refusal_mode=cfg.refusal_mode, purge_boundary=cfg.purge_boundary,
                       purge_case_sensitive=cfg.purge_case_sensitive)


class GRPOTrainer:
    """`reward_fn(completion, label)` returns an object with `.reward` (float) and `.refused` (bool);
    the default scores with `cfg.reward_variant` (RULE's rule_reward or PURGE's purge_reward)."""

    def __init__(self, cfg: Stage2Config, reward_fn=None):
        self.cfg = cfg
        # flags, data, model paths and records, run directory: checked before loading
        self.rows, ckpt, self.record = start_run(cfg, "stage2")
        self.device = resolve_device(cfg.device, cfg.cpu_threads)
        seed_everything(cfg.seed)
        self.out = Path(cfg.out)
        self.model, self.tokenizer = load_model(str(ckpt or cfg.model), self.device)
        self.ref = None
        if cfg.kl_coef > 0:  # the frozen reference is the starting policy (the Stage 1 checkpoint) by default
            self.ref, _ = load_model(cfg.ref_model or cfg.model, self.device, trainable=False)
        self.reward_fn = reward_fn or default_reward(cfg)
        self.prompt_ids = [format_prompt(self.tokenizer, r["prompt"], cfg.chat_template, cfg.input_template)
                           for r in self.rows]
        self.optimizer = make_optimizer(self.model, cfg)
        self.sampler = IndexSampler(len(self.rows), cfg.seed)
        self.buffer = HardCaseReplayBuffer(cfg.replay) if cfg.replay.enable else None
        self.step = 0
        if ckpt is not None:
            state = load_state(ckpt)
            self.optimizer.load_state_dict(state["optimizer"])
            self.sampler.load_state_dict(state["sampler"])
            if self.buffer is not None and state["buffer"] is not None:  # (replay may be switched on at resume)
                self.buffer.load_state_dict(state["buffer"])
            self.step = state["step"]
            set_rng_state(state["rng"])
        else:
            seed_everything(cfg.seed)  # model loading may draw random numbers; start sampling from the seed
        self.logger = MetricsLogger(self.out, cfg.tensorboard, cfg.wandb_project, resume_step=self.step,
                                    config=config_to_dict(cfg))
        self.timer = Timer(torch.cuda.synchronize if self.device.type == "cuda" else None)
        self.last_replay_batch = None  # (Batch, advantages) of the latest replay update, for benchmarks

    # ---- rollout ---------------------------------------------------------------------------------------------
    def rollout(self) -> dict:
        cfg, n = self.cfg, self.cfg.n_samples
        picked = self.sampler.next(cfg.rollout_batch)
        rows, prompts = [self.rows[i] for i in picked], [self.prompt_ids[i] for i in picked]
        with self.timer("generate"):
            responses, mask = sample(self.model, self.tokenizer, prompts, n, cfg.max_new_tokens, cfg.temperature,
                                     cfg.top_p, self.device)
        with self.timer("reward"):
            texts = decode_responses(self.tokenizer, responses, mask)
            results = [self.reward_fn(text, rows[i // n]["label"]) for i, text in enumerate(texts)]
        rewards = torch.tensor([r.reward for r in results], dtype=torch.float32)
        stats = group_stats(rewards, n)
        batch = pack([p for p in prompts for _ in range(n)], responses, mask, self.tokenizer.pad_token_id,
                     self.device)
        with self.timer("logprobs"):
            old = batched_logprobs(self.model, batch, cfg.micro_batch_size, cfg.temperature)
            ref = None if self.ref is None else batched_logprobs(self.ref, batch, cfg.micro_batch_size,
                                                                 cfg.temperature)
        return dict(rows=rows, prompts=prompts, responses=responses, mask=mask, texts=texts, results=results,
                    rewards=rewards, stats=stats, batch=batch, old=old, ref=ref)

    # ---- updates ---------------------------------------------------------------------------------------------
    def policy_update(self, ro: dict) -> dict:
        cfg, batch = self.cfg, ro["batch"]
        adv = ro["stats"].advantages.to(self.device)
        normalizer = units(batch.action_mask)

        def loss_fn(logprobs, sl):
            return grpo_policy_loss(logprobs, ro["old"][sl], adv[sl], batch.action_mask[sl], clip_low=cfg.clip_low,
                                    clip_high=cfg.clip_high, normalizer=normalizer,
                                    ref_logprobs=None if ro["ref"] is None else ro["ref"][sl],
                                    kl_coef=cfg.kl_coef, kl_estimator=cfg.kl_estimator)

        with self.timer("update"):
            metrics = backward_microbatches(self.model, batch, cfg.micro_batch_size, loss_fn,
                                            temperature=cfg.temperature)
            metrics["grad_norm"] = optimizer_step(self.model, self.optimizer, cfg.grad_clip)
        return {f"train/{k}": v for k, v in metrics.items()}

    def replay_update(self, groups: list[StoredGroup]) -> dict:
        """The off-policy update on stored groups: their own responses, behaviour log-probs and advantages."""
        cfg, rcfg = self.cfg, self.cfg.replay
        width = max(g.response_ids.shape[1] for g in groups)

        def stack(name):  # per-group [n, T_g] -> [sum n, width], right-padded
            return torch.cat([F.pad(getattr(g, name), (0, width - g.response_ids.shape[1])) for g in groups])

        mask = stack("action_mask")
        batch = pack([g.prompt_ids.tolist() for g in groups for _ in range(g.n)], stack("response_ids"), mask,
                     self.tokenizer.pad_token_id, self.device)
        mu = stack("behaviour_logprobs").to(self.device)
        with_ref = self.ref is not None and all(g.ref_logprobs is not None for g in groups)
        ref = stack("ref_logprobs").to(self.device) if with_ref else None
        adv = torch.cat([g.advantages for g in groups]).to(self.device)
        # One no-grad pass of the policy the update starts from: the proximal policy of the decoupled mode, and
        # the weights whose mean over the whole replay batch self-normalises them (micro-batching must not change it).
        start = None
        if rcfg.loss_mode == "decoupled" or rcfg.normalises_weights:
            start = batched_logprobs(self.model, batch, cfg.micro_batch_size, cfg.temperature)
        weight_mean = None
        if rcfg.normalises_weights:
            total, count = replay_weight_sum(start, mu, batch.action_mask, mode=rcfg.loss_mode, level=rcfg.loss_level,
                                             clip_low=rcfg.clip_low, clip_high=rcfg.clip_high, is_cap=rcfg.is_cap)
            weight_mean = total / max(count, 1.0)
        normalizer = units(batch.action_mask, rcfg.loss_level)

        def loss_fn(logprobs, sl):
            loss, m = replay_loss(logprobs, mu[sl], adv[sl], batch.action_mask[sl], mode=rcfg.loss_mode,
                                  level=rcfg.loss_level, clip_low=rcfg.clip_low, clip_high=rcfg.clip_high,
                                  is_cap=rcfg.is_cap, self_normalize=rcfg.self_normalize, weight_mean=weight_mean,
                                  proximal_logprobs=None if start is None else start[sl],
                                  ref_logprobs=None if ref is None else ref[sl],
                                  kl_coef=cfg.kl_coef if rcfg.kl else 0.0,
                                  kl_estimator=cfg.kl_estimator, normalizer=normalizer)
            # coef scales the whole replay objective, KL term included (as the OpenRLHF adapter does).
            m["loss"] = m["loss"] * rcfg.coef
            return loss * rcfg.coef, m

        metrics = backward_microbatches(self.model, batch, cfg.micro_batch_size, loss_fn, level=rcfg.loss_level,
                                        temperature=cfg.temperature)
        metrics["grad_norm"] = optimizer_step(self.model, self.optimizer, cfg.grad_clip)
        metrics.update(groups=len(groups), tokens=int(batch.action_mask.sum()),
                       mean_age=sum(self.step - g.step for g in groups) / len(groups),
                       mean_group_reward=float(sum(g.mean_reward for g in groups) / len(groups)))
        self.last_replay_batch = (batch, adv)
        return metrics

    # ---- one step --------------------------------------------------------------------------------------------
    def train_step(self) -> dict:
        self.step += 1
        t0 = time.perf_counter()
        ro = self.rollout()
        metrics = self.policy_update(ro)
        metrics.update(self.rollout_metrics(ro))
        if self.buffer is not None:
            # Every group of the step goes to admission: the buffer decides, nothing is filtered before it.
            groups = groups_from_batch(
                prompt_ids=[torch.tensor(p) for p in ro["prompts"]], prompt_keys=[r["prompt_id"] for r in ro["rows"]],
                labels=[r["label"] for r in ro["rows"]], response_ids=ro["responses"], action_mask=ro["mask"],
                behaviour_logprobs=ro["old"].cpu(), rewards=ro["rewards"], advantages=ro["stats"].advantages,
                step=self.step, ref_logprobs=None if ro["ref"] is None else ro["ref"].cpu())
            self.buffer.admit(groups, self.step)
            active = self.buffer.ready(self.step)
            if active:
                with self.timer("replay"):
                    replayed = self.replay_update(self.buffer.sample(self.step))
                metrics.update({f"replay/{k}": v for k, v in replayed.items()})
            metrics["replay/active"] = float(active)
            metrics.update({f"replay/buffer_{k}": v for k, v in self.buffer.stats(self.step).items()})
        self.logger.log_history([
            {"step": self.step, "prompt_id": r["prompt_id"], "kind": r.get("kind", ""),
             "mean_reward": float(ro["stats"].mean[g]),
             "rewards": ro["rewards"][g * self.cfg.n_samples:(g + 1) * self.cfg.n_samples].tolist()}
            for g, r in enumerate(ro["rows"])])
        metrics.update(self.timer.pop())
        metrics["timing/step"] = time.perf_counter() - t0
        self.logger.log(self.step, metrics)
        return metrics

    def rollout_metrics(self, ro: dict) -> dict:
        n, tau = self.cfg.n_samples, self.cfg.replay.threshold
        out = {"rollout/reward_mean": float(ro["rewards"].mean()),
               "rollout/zero_variance_frac": float(ro["stats"].zero_variance.float().mean()),
               "rollout/hard_frac": float((ro["stats"].mean < tau).float().mean()),
               "rollout/response_len": float(ro["mask"].sum(-1).float().mean()),
               # no EOS among the kept tokens (mask.all also counted a response whose EOS was the batch's last token)
               "rollout/truncated_frac": 1.0 - float((ro["mask"] & (ro["responses"] == self.tokenizer.eos_token_id))
                                                     .any(-1).float().mean())}
        kinds = [r.get("kind", "") for r in ro["rows"] for _ in range(n)]
        for kind in sorted(set(kinds)):
            idx = [i for i, k in enumerate(kinds) if k == kind]
            out[f"rollout/reward_{kind}"] = float(ro["rewards"][idx].mean())
            out[f"rollout/refusal_rate_{kind}"] = sum(ro["results"][i].refused for i in idx) / len(idx)
            if hasattr(ro["results"][idx[0]], "mentioned"):  # PURGE: completions naming a forbidden term
                out[f"rollout/mention_rate_{kind}"] = sum(ro["results"][i].mentioned is not None for i in idx) / len(idx)
        return out

    def checkpoint(self) -> Path:
        state = {"step": self.step, "stage": 2, "optimizer": self.optimizer.state_dict(),
                 "sampler": self.sampler.state_dict(), "rng": rng_state(), "config": config_to_dict(self.cfg),
                 "buffer": None if self.buffer is None else self.buffer.state_dict()}
        return save_checkpoint(self.out / "checkpoints", self.step, self.model, self.tokenizer, state,
                               self.cfg.keep_checkpoints, record={**self.record, "steps": self.step})

    def fit(self) -> Path:
        cfg = self.cfg
        name = "rule" if self.buffer is None else "rerule"  # (an empty buffer is falsy: it has __len__)
        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"stage2 {name}", disable=not cfg.progress)
        while self.step < cfg.steps:
            m = self.train_step()
            bar.update(1)
            bar.set_postfix(reward=f"{m['rollout/reward_mean']:.2f}", replay=int(m.get("replay/active", 0)))
            if (cfg.save_every and self.step % cfg.save_every == 0) or self.step == cfg.stop_after:
                with self.timer("checkpoint"):
                    self.checkpoint()
            if self.step == cfg.stop_after:
                bar.close()
                self.logger.close()
                return self.out / "checkpoints"
        bar.close()
        final = save_model_dir(self.out / "final", self.model, self.tokenizer, {**self.record, "steps": self.step})
        self.logger.close()
        return final


def train_stage2(cfg: Stage2Config, reward_fn=None) -> Path:
    return GRPOTrainer(cfg, reward_fn).fit()
