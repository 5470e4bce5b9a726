"""The replay update's collectives with two real processes: torch.distributed over gloo, real `dist.all_reduce`, no
Ray, no vLLM. Each process is one actor rank running OpenRLHF's own `ActorPPOTrainer.ppo_train` (through
`ReplayPolicyModel.fit_replay`) on the share of the replay batch that the driver's cut and OpenRLHF's own
`RayActorGroup.async_run_method_batch` hand it. DeepSpeed is the only stand-in: backward scaled by 1 / accumulation
steps, and at each accumulation boundary the gradient averaged over the ranks with a real all-reduce (what ZeRO's
reduce-scatter does), which is the very averaging OpenRLHF's loss normalisation compensates with `dp_size`.

Checked: both ranks make the same collective calls in the same order (OpenRLHF's loss normalisers, the
self-normalisation mean, the metrics, the gradient averaging) for every split the driver produces, and the
replay gradient at two ranks equals the gradient at one rank on the same data. The control: the old cut
(whole-batch rollout micro-batches, 2/1 between the ranks) does not finish.
"""

import datetime
import multiprocessing
import socket
import time
import types

import pytest
import torch

from openrlhf_harness import model_dir, parse_args, replay_command  # noqa: F401 (fixture)
from openrlhf_rerule.openrlhf.args import check_replay_compatible
from openrlhf_rerule.replay import StoredGroup

pytestmark = pytest.mark.slow
TIMEOUT = 600  # seconds for a whole two-process run (about 30 s alone); a collective mismatch is a hang, cut off here
GLOO_TIMEOUT = 60  # seconds a rank waits in one collective (the control below waits this long)

# (train batch, train micro-batch, rollout batch, rollout micro-batch, groups of n = 4), each accepted by the
# start-up checks at two ranks: one replay optimizer step of two micro-batches per rank; three optimizer steps;
# shares of several uneven rollout micro-batches (3 + 3 + 2 samples per rank).
SPLITS = [(16, 4, 4, 8, 4), (8, 2, 2, 4, 6), (8, 4, 6, 3, 4)]


def replay_groups(count: int, vocab: int, seed: int) -> list[StoredGroup]:
    """Groups of 4 samples with response lengths 1-5 (so the ranks' token counts differ), behaviour and reference
    log-probs off the policy (weights clipped on both sides, KL with a gradient)."""
    gen = torch.Generator().manual_seed(seed)
    groups = []
    for i in range(count):
        lengths = torch.randint(1, 6, (4,), generator=gen)
        mask = torch.arange(5)[None] < lengths[:, None]
        rewards = torch.tensor([0.0, 0.0, 0.5, 0.0]) if i % 2 else torch.tensor([0.5, 0.0, 0.0, 0.0])
        groups.append(StoredGroup(
            prompt_id=f"p{i}", label="", step=1, prompt_ids=torch.randint(4, vocab, (3,), generator=gen),
            response_ids=torch.randint(4, vocab, (4, 5), generator=gen), action_mask=mask,
            behaviour_logprobs=-2.0 - 0.5 * torch.randn(4, 5, generator=gen) * mask,
            ref_logprobs=-2.0 - 0.5 * torch.randn(4, 5, generator=gen) * mask,
            rewards=rewards, advantages=(rewards - rewards.mean()) / (rewards.std() + 1e-9)))
    return groups


def rank_main(rank, world, port, model_path, old_cut, out):
    """One actor rank: every split of SPLITS in turn; saves the calls, gradients and weight mean of each."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    torch.cuda.current_device = lambda: 0  # NaiveReplayBuffer formats f"cuda:{...}" at construction only
    torch.cuda.synchronize = lambda *a, **kw: None
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=GLOO_TIMEOUT))
    calls = []
    for name in ("all_reduce", "all_gather", "broadcast", "barrier", "reduce_scatter"):
        real = getattr(dist, name)

        def recorded(*args, _name=name, _real=real, **kwargs):
            tensor = args[0] if args and isinstance(args[0], torch.Tensor) else None
            calls.append((_name, None if tensor is None else (tuple(tensor.shape), str(tensor.dtype)),
                          str(kwargs.get("op", ""))))
            return _real(*args, **kwargs)

        setattr(dist, name, recorded)

    from openrlhf.models import Actor
    from openrlhf.trainer.ray.launcher import RayActorGroup
    from openrlhf.trainer.ray.ppo_actor import ActorPPOTrainer
    from openrlhf.utils.deepspeed import DeepspeedStrategy
    from openrlhf.utils.utils import get_tokenizer

    from openrlhf_rerule.openrlhf.actor import ReplayPolicyModel
    from openrlhf_rerule.openrlhf.experience import experiences_from_groups

    class Strategy:
        """DeepSpeed's role at `world` data-parallel ranks; its all_reduce is DeepspeedStrategy's own."""

        ring_attn_group, ds_device_mesh = None, None
        all_reduce = DeepspeedStrategy.all_reduce

        def __init__(self, args):
            self.args, self.world_size = args, world
            self.accumulated_gradient = args.train.batch_size // args.train.micro_batch_size // world
            self.micro_steps, self.grads = 0, []

        def is_rank_0(self):
            return rank == 0

        def print(self, *a):
            pass

        def backward(self, loss, model, optimizer):
            (loss / self.accumulated_gradient).backward()

        def optimizer_step(self, optimizer, model, scheduler, name="model"):
            self.micro_steps += 1
            if self.micro_steps % self.accumulated_gradient == 0:
                params = [p for p in model.parameters() if p.grad is not None]
                for p in params:  # ZeRO's gradient averaging over the data-parallel ranks
                    dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                    p.grad /= world
                self.grads.append([p.grad.clone() for p in params])
                optimizer.step()
                optimizer.zero_grad()

        def get_grad_norm(self, model):
            return 0.0

    tokenizer = get_tokenizer(model_path, None, "left", None)
    results = {}
    for split in SPLITS:
        train_batch, train_micro, rollout_batch, rollout_micro, count = split
        args = parse_args(replay_command(world, train_batch, train_micro, rollout_batch, rollout_micro, 4, count,
                                         count, model=model_path))
        strategy = Strategy(args)
        actor = Actor(model_path, attn_implementation="eager", param_dtype="bf16")
        actor.model.float()
        optimizer = torch.optim.SGD(actor.parameters(), lr=0.0)  # gradients compared at the same weights
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        policy = ReplayPolicyModel.__new__(ReplayPolicyModel)
        policy.strategy, policy.actor = strategy, actor
        policy.trainer = ActorPPOTrainer(strategy, actor, None, optimizer, scheduler, micro_train_batch_size=train_micro)
        policy.enable_replay()
        torch.cuda.current_device = lambda: "cpu"

        groups = replay_groups(count, len(tokenizer), seed=count)
        experiences = experiences_from_groups(groups, rollout_micro, tokenizer.pad_token_id, step=2,
                                              ranks=1 if old_cut else world)
        group = RayActorGroup.__new__(RayActorGroup)
        group._actor_handlers = [types.SimpleNamespace(execute_batch=types.SimpleNamespace(
            remote=lambda method, chunk, start, end: chunk["experience"][start:end])) for _ in range(world)]
        group.duplicate_actors = 1
        import ray
        ray.put = lambda value, **kw: value
        share = group.async_run_method_batch(method_name="stage_replay", experience=experiences)[rank]
        for experience in share:
            policy.stage_replay(experience)
        calls.clear()
        torch.manual_seed(0)  # the DataLoader's shuffle
        logged = policy.fit_replay(kl_ctl=0.5)
        # The self-normalisation mean the replay loss divided by (all-reduced over the ranks' shares), and the mean
        # normalised weight the pass logged (OpenRLHF's metric reduction over micro-batches and ranks).
        results[split] = (list(calls), strategy.grads, policy.trainer.replay_loss_fn.weight_mean,
                          logged["replay/is_weight_mean"])
        torch.cuda.current_device = lambda: 0
    torch.save(results, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def run_ranks(world, model_path, out, old_cut=False):
    """Run `world` rank processes; {(rank, split): (calls, gradients, weight mean, logged mean)}, or None if a rank
    failed or did not finish within TIMEOUT (a hang)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out.mkdir(parents=True)
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=rank_main, args=(rank, world, port, str(model_path), old_cut, str(out)))
             for rank in range(world)]
    for proc in procs:
        proc.start()
    deadline = time.time() + TIMEOUT
    for proc in procs:
        proc.join(timeout=max(deadline - time.time(), 0))
    if any(proc.is_alive() for proc in procs):
        for proc in procs:
            proc.kill()
        return None
    if any(proc.exitcode != 0 for proc in procs):
        return None
    return {(rank, split): result for rank in range(world)
            for split, result in torch.load(out / f"rank{rank}.pt", weights_only=False).items()}


def test_two_ranks_make_the_same_collectives_and_the_gradient_of_one_rank(model_dir, tmp_path):
    for train_batch, train_micro, rollout_batch, rollout_micro, count in SPLITS:  # splits the driver produces
        check_replay_compatible(parse_args(replay_command(2, train_batch, train_micro, rollout_batch, rollout_micro,
                                                          4, count, count)))
    two, one = run_ranks(2, model_dir, tmp_path / "two"), run_ranks(1, model_dir, tmp_path / "one")
    assert two is not None and one is not None, "a rank did not finish: a collective mismatch hangs"
    for split in SPLITS:
        (calls0, grads0, mean0, logged0), (calls1, grads1, mean1, logged1) = two[(0, split)], two[(1, split)]
        assert calls0 == calls1 and len(calls0) > 0, split  # same calls, same order, same shapes
        assert any(c[0] == "all_reduce" for c in calls0)
        assert len(grads0) == len(grads1) == len(one[(0, split)][1]), split  # the same optimizer steps
        assert mean0 == mean1 == pytest.approx(one[(0, split)][2], rel=1e-6)  # one mean over both shares
        assert mean0 != pytest.approx(1.0, abs=1e-3)  # (the behaviour log-probs are off the policy: a real division)
        # At LR 0 the policy does not move during the pass: the logged mean normalised weight is 1 on every rank
        # (it drifts from 1 only as the pass's optimizer steps move the policy, as in tests/e2e).
        assert logged0 == logged1 == pytest.approx(1.0, abs=1e-6) and one[(0, split)][3] == pytest.approx(1.0, abs=1e-6)
        for a, b in zip(grads0, grads1):  # averaged: identical on both ranks
            for x, y in zip(a, b):
                assert torch.equal(x, y)
    # One optimizer step (the first split): DP=2 and DP=1 see the same samples, so the same gradient. Measured:
    # max |difference| / max |gradient| about 1e-7 (float32 summation order).
    split = SPLITS[0]
    two_grads, one_grads = two[(0, split)][1], one[(0, split)][1]
    assert len(two_grads) == len(one_grads) == 1
    scale = max(g.abs().max().item() for g in one_grads[0])
    worst = max((x - y).abs().max().item() for x, y in zip(two_grads[0], one_grads[0]))
    print(f"\nreplay gradient DP=2 vs DP=1: max |diff| {worst:.3g}, max |grad| {scale:.3g}, "
          f"relative {worst / scale:.3g}")
    assert scale > 0 and worst <= 1e-5 * scale


def test_the_old_cut_leaves_a_rank_waiting(model_dir, tmp_path):
    """The control: the whole batch in rollout micro-batches, split by OpenRLHF's ceiling chunks, gives one rank
    more micro-batches than the other; the run does not finish (or a rank fails in a broken collective)."""
    from openrlhf_rerule.openrlhf.experience import experiences_from_groups

    # The third split: 16 samples in micro-batches of 3 are 6 Experiences, 3 per rank, of 9 and 7 samples; at train
    # micro-batches of 4, rank 0 trains 2 micro-batches (and drops a sample) and rank 1 trains 1.
    old = experiences_from_groups(replay_groups(4, 20, seed=4), 3, 0, step=2)
    assert [len(e.sequences) for e in old] == [3, 3, 3, 3, 3, 1]
    assert run_ranks(2, model_dir, tmp_path / "old", old_cut=True) is None
