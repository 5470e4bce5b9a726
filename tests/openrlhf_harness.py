"""The stubbed OpenRLHF harness shared by the adapter's fast tests: OpenRLHF 0.11.2's real trainer and actor code
on CPU, with Ray, vLLM, DeepSpeed and CUDA synchronisation stubbed at the boundaries only (as OpenRLHF's own
tests do). `build` returns a driver-side ReplayTrainer wired to one local policy actor and one reference actor.
"""

import copy
import math
import os

import pytest
import torch

from openrlhf_rerule.local.tiny import save_tiny_model
from openrlhf_rerule.openrlhf.args import run_openrlhf_main
from openrlhf_rerule.openrlhf.compat import import_openrlhf
from openrlhf_rerule.openrlhf.records import stage2_record
from openrlhf_rerule.openrlhf.args import add_stage2_arguments

import_openrlhf()
import ray  # noqa: E402
from openrlhf.models import Actor  # noqa: E402
from openrlhf.trainer.ppo_trainer import BasePPOTrainer  # noqa: E402
from openrlhf.trainer.ppo_utils.experience import Experience  # noqa: E402
from openrlhf.trainer.ray.launcher import ReferenceModelActor  # noqa: E402
from openrlhf.trainer.ray.ppo_actor import ActorPPOTrainer  # noqa: E402

from openrlhf_rerule.openrlhf.actor import ReplayPolicyModel  # noqa: E402
from openrlhf_rerule.openrlhf.trainer import ReplayTrainer  # noqa: E402

PROMPTS = ["who wrote the red book ?", "where was anna born ?", "what is the capital of france ?",
           "name the author of the blue song ."]
WORDS = "i do not know . the answer is paris anna wrote it in london unfortunately sorry".split()
# Per prompt, the n = 4 rewards of every step: groups 0 and 2 are hard (mean < 0.4), 1 and 3 are easy.
REWARDS = [[0.0, 0.0, 0.5, 0.0], [1.0, 1.0, 0.5, 1.0], [0.0, 0.5, 0.0, 0.0], [1.0, 0.0, 1.0, 1.0]]
N = 4


def parse_args(argv):
    parsed = {}
    run_openrlhf_main("openrlhf.cli.train_ppo_ray", argv, train=lambda a: parsed.setdefault("args", a),
                      extra_arguments=add_stage2_arguments)
    return parsed["args"]


def replay_command(gpus, train_batch, train_micro, rollout_batch, rollout_micro, n, batch_groups, min_groups,
                   extra=(), model="tiny"):
    """An OpenRLHF + replay command line for `gpus` actor ranks (parse it with `parse_args`)."""
    return ["--actor.model_name_or_path", model, "--reward.remote_url", "reward.py",
            "--actor.num_gpus_per_node", str(gpus), "--ref.num_gpus_per_node", str(gpus),
            "--vllm.num_engines", str(gpus), "--ds.attn_implementation", "eager",
            "--algo.advantage.estimator", "group_norm", "--algo.kl.use_loss", "--algo.kl.init_coef", "0.01",
            "--rollout.n_samples_per_prompt", str(n), "--rollout.batch_size", str(rollout_batch),
            "--rollout.micro_batch_size", str(rollout_micro), "--train.batch_size", str(train_batch),
            "--train.micro_batch_size", str(train_micro), "--replay.enable", "--replay.threshold", "0.4",
            "--replay.batch_groups", str(batch_groups), "--replay.min_groups", str(min_groups),
            "--replay.warmup_steps", "0", "--replay.capacity", str(max(batch_groups, min_groups) + 8), *extra]


class Strategy:
    """DeepSpeed boundary: plain torch backward / optimizer steps every `accumulated_gradient` micro-batches."""

    ring_attn_group = None

    def __init__(self, args):
        self.args = args
        self.accumulated_gradient = args.train.batch_size // args.train.micro_batch_size
        self.micro_steps = 0
        self.optimizer_steps = 0
        self.saved = {}

    def print(self, *a):
        pass

    def is_rank_0(self):
        return True

    def all_reduce(self, data, op="mean"):
        # One rank: a reduction over one rank is its input. Nothing here says anything about several ranks; those
        # run with real collectives in tests/test_openrlhf_collectives.py.
        return data

    def backward(self, loss, model, optimizer):
        # DeepSpeed scales every backward by 1 / gradient-accumulation steps (OpenRLHF's loss_utils compensates).
        (loss / self.accumulated_gradient).backward()

    def optimizer_step(self, optimizer, model, scheduler, name="model"):
        self.micro_steps += 1
        if self.micro_steps % self.accumulated_gradient == 0:
            self.last_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step()  # DeepSpeed's engine.step() steps the scheduler it was given: the same object
            self.optimizer_steps += 1

    def get_grad_norm(self, model):
        return 0.0

    def save_ckpt(self, model, path, tag, max_num, max_mem, client_states, **kwargs):
        os.makedirs(os.path.join(path, tag))  # what DeepSpeed's save_checkpoint leaves on disk
        self.saved[tag] = copy.deepcopy(client_states)

    def _read_ckpt_metric(self, path):  # the policy actor's rotation reads it (the stub writes no metric file)
        return None


class Group:
    """Ray actor-group boundary: the same calls as RayActorGroup, on local objects (one DP rank)."""

    def __init__(self, actor):
        self.actor, self.calls = actor, []

    def async_run_method(self, method_name, **kwargs):
        self.calls.append(method_name)
        return [getattr(self.actor, method_name)(**kwargs)]

    def async_run_method_batch(self, method_name, **kwargs):
        self.calls.append(method_name)
        length = len(next(iter(kwargs.values())))
        return [self.actor.execute_batch(method_name, kwargs, 0, length)]


class SamplesGenerator:
    """vLLM boundary: rollouts as `_process_response_into_experience` builds them, rewards already attached."""

    def __init__(self, tokenizer, steps):
        self.tokenizer, self.steps, self.calls = tokenizer, steps, 0
        self.rng = torch.Generator().manual_seed(0)

    def generate_samples(self, **kwargs):
        self.calls += 1
        vocab = [self.tokenizer.convert_tokens_to_ids(w) for w in WORDS]
        samples = []
        for prompt, rewards in zip(PROMPTS, REWARDS):
            prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            for reward in rewards:
                length = int(torch.randint(2, 6, (1,), generator=self.rng))
                response = [vocab[i] for i in torch.randint(len(vocab), (length,), generator=self.rng)]
                sequence = torch.tensor(prompt_ids + response + [self.tokenizer.eos_token_id])
                action_mask = torch.zeros(len(sequence) - 1, dtype=torch.long)
                action_mask[len(prompt_ids) - 1:] = 1
                rollout_log_probs = -torch.rand(len(sequence) - 1, generator=self.rng) * action_mask  # vLLM's
                samples.append(Experience(
                    sequences=sequence[None], attention_mask=torch.ones_like(sequence)[None],
                    action_mask=action_mask[None], rollout_log_probs=rollout_log_probs[None], prompts=[prompt],
                    labels=['["<reject>", "x"]'],
                    rewards=torch.tensor([reward]), scores=torch.tensor([reward]),
                    response_length=torch.tensor([length + 1]), truncated=torch.tensor([False]),
                    total_length=torch.tensor([float(len(sequence))]), info={"reward": torch.tensor([reward])}))
        return samples, None, len(PROMPTS), self.calls >= self.steps


class PromptLoader:
    def __init__(self, steps):
        self.steps, self.state = steps, None

    def __len__(self):
        return self.steps * len(PROMPTS)

    def state_dict(self):
        return {"position": 1}

    def load_state_dict(self, state):
        self.state = state


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(PROMPTS + [" ".join(WORDS)], tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def cpu_boundaries(monkeypatch):
    monkeypatch.setattr(ray, "get", lambda refs, **kw: refs)
    monkeypatch.setattr(ray, "put", lambda value, **kw: value)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **kw: None)
    monkeypatch.setattr(torch.distributed, "barrier", lambda *a, **kw: None)
    # NaiveReplayBuffer formats f"cuda:{current_device()}" at construction, ppo_train moves batches to
    # current_device() at training time: 0 for the former, "cpu" for the latter.
    return lambda device: monkeypatch.setattr(torch.cuda, "current_device", lambda: device)


def build(model_dir, tmp_path, cpu_boundaries, steps, extra=(), micro_batch_size=8, optimizer=None,
          lr_lambda=lambda _: 1.0, fp32=False):
    """`optimizer(params)` defaults to AdamW(lr 1e-3); `lr_lambda` is the LambdaLR schedule of the actor; `fp32`
    casts the actor after loading (OpenRLHF's Actor loads bf16 / fp16 only), for exact gradient comparisons."""
    args = parse_args([
        "--actor.model_name_or_path", str(model_dir), "--reward.remote_url", "reward.py",
        "--actor.num_gpus_per_node", "1",
        "--algo.advantage.estimator", "group_norm", "--algo.kl.use_loss", "--algo.kl.estimator", "k3",
        "--algo.kl.init_coef", "0.01", "--rollout.n_samples_per_prompt", str(N), "--rollout.batch_size", "4",
        "--rollout.micro_batch_size", "8", "--train.batch_size", "16", "--train.micro_batch_size", str(micro_batch_size),
        "--ckpt.path", str(tmp_path / "ckpt"), "--ckpt.save_steps", "2", "--ckpt.max_num", "3",
        "--logger.tensorboard_dir", str(tmp_path / "tb"), "--ds.attn_implementation", "eager",
        "--replay.enable", "--replay.threshold", "0.4", "--replay.min_groups", "4", "--replay.warmup_steps", "2",
        "--replay.capacity", "20", "--replay.batch_groups", "4", *extra])
    args.eval.steps = math.inf  # what PPOTrainer.__init__ does for -1
    args.rerule_record = stage2_record(args)  # what our train() prepares before Ray starts
    strategy = Strategy(args)

    actor_model = Actor(str(model_dir), attn_implementation="eager", param_dtype="bf16")
    if fp32:
        actor_model.model.float()
    optimizer = (optimizer or (lambda params: torch.optim.AdamW(params, lr=1e-3)))(actor_model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    policy = ReplayPolicyModel.__new__(ReplayPolicyModel)  # init_model_from_pretrained is DeepSpeed: done by hand
    policy.strategy, policy.actor, policy.save_hf_ckpt, policy.disable_ds_ckpt = strategy, actor_model, False, False
    policy.checkpoint_states = {}
    cpu_boundaries(0)
    policy.trainer = ActorPPOTrainer(strategy, actor_model, None, optimizer, scheduler,
                                     micro_train_batch_size=args.train.micro_batch_size)
    policy.enable_replay()

    reference = ReferenceModelActor.__ray_actor_class__.__new__(ReferenceModelActor.__ray_actor_class__)
    reference.strategy = strategy
    reference.model = Actor(str(model_dir), attn_implementation="eager", param_dtype="bf16").eval()
    cpu_boundaries("cpu")

    trainer = ReplayTrainer.__new__(ReplayTrainer)  # PPOTrainer.__init__ only adds datasets and vLLM generation
    from openrlhf.utils.utils import get_tokenizer
    tokenizer = get_tokenizer(str(model_dir), None, "left", strategy)
    BasePPOTrainer.__init__(trainer, strategy, Group(policy), None, None, Group(reference), None, tokenizer)
    trainer.init_replay()
    trainer.samples_generator = SamplesGenerator(tokenizer, steps)
    trainer.prompts_dataloader, trainer.eval_dataloader, trainer.generate_kwargs = PromptLoader(steps), None, {}
    return trainer, policy, strategy
