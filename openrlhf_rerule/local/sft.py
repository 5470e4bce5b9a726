"""Stage 1 (rejection steering): supervised fine-tuning on {prompt, response} rows, loss on the response
tokens (and EOS) only. Rows carrying "text" instead are trained on every token after the first: that is how
the demo teaches the tiny model its world before unlearning it."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoint import load_state, rng_state, save_checkpoint, save_model_dir, set_rng_state
from .config import Stage1Config, config_to_dict
from .engine import (IndexSampler, backward_microbatches, load_model, make_optimizer, optimizer_step,
                     resolve_device, seed_everything)
from .metrics import MetricsLogger, Timer
from .preflight import start_run
from .rollout import pack
from .sft_data import encode_examples


def warmup_cosine(total_steps: int, warmup_ratio: float):
    """Linear warm-up, then cosine decay to 10% of the peak learning rate."""
    warmup = int(total_steps * warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return factor


def train_stage1(cfg: Stage1Config) -> Path:
    rows, ckpt, record = start_run(cfg, "sft")  # flags, data, model path, run directory: all checked before loading
    device = resolve_device(cfg.device, cfg.cpu_threads)
    seed_everything(cfg.seed)
    out = Path(cfg.out)
    model, tokenizer = load_model(str(ckpt or cfg.model), device)
    examples = encode_examples(rows, tokenizer, cfg.max_len, cfg.chat_template, cfg.input_template)
    total_steps = max(1, math.ceil(cfg.epochs * len(examples) / cfg.batch_size))
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_steps, cfg.warmup_ratio))
    sampler = IndexSampler(len(examples), cfg.seed)
    start = 0
    if ckpt is not None:
        state = load_state(ckpt)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        set_rng_state(state["rng"])
        start = state["step"]
    logger = MetricsLogger(out, cfg.tensorboard, cfg.wandb_project, resume_step=start, config=config_to_dict(cfg))
    timer = Timer(torch.cuda.synchronize if device.type == "cuda" else None)

    def checkpoint(step: int) -> None:
        state = {"step": step, "stage": 1, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "sampler": sampler.state_dict(), "rng": rng_state(), "config": config_to_dict(cfg)}
        save_checkpoint(out / "checkpoints", step, model, tokenizer, state, cfg.keep_checkpoints,
                        record={**record, "steps": step})

    bar = tqdm(range(start + 1, total_steps + 1), desc="stage1 sft", disable=not cfg.progress, initial=start,
               total=total_steps)
    for step in bar:
        t0 = time.perf_counter()
        picked = [examples[i] for i in sampler.next(cfg.batch_size)]
        batch = pack([p for p, _ in picked], [t for _, t in picked], None, tokenizer.pad_token_id, device)
        normalizer = int(batch.action_mask.sum())

        def loss_fn(logprobs, rows):
            mask = batch.action_mask[rows]
            nll = -(logprobs * mask).sum() / normalizer
            # Fraction of target tokens the model already gives more than half its mass (a cheap accuracy).
            sure = (logprobs.detach() > math.log(0.5)).float()
            return nll, {"loss": float(nll.detach()), "p_gt_half": float((sure * mask).sum() / mask.sum())}

        with timer("update"):
            metrics = backward_microbatches(model, batch, cfg.micro_batch_size, loss_fn)
            lr = scheduler.get_last_lr()[0]
            grad_norm = optimizer_step(model, optimizer, cfg.grad_clip, scheduler)
        # Log before checkpointing: a row is never lost to a kill between the two (resume drops later rows).
        logger.log(step, {**{f"train/{k}": v for k, v in metrics.items()}, "train/lr": lr,
                          "train/grad_norm": grad_norm, "train/tokens": normalizer, **timer.pop(),
                          "timing/step": time.perf_counter() - t0})
        if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.stop_after:
            with timer("checkpoint"):
                checkpoint(step)
        bar.set_postfix(loss=f"{metrics['loss']:.3f}")
        if step == cfg.stop_after:
            logger.close()
            return out / "checkpoints"
    final = save_model_dir(out / "final", model, tokenizer, {**record, "steps": total_steps})
    logger.close()
    return final
