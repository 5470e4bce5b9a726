"""How a model's training step and greedy decoding on this CPU slow down beside other busy processes, by OpenMP
setting: the threads PyTorch runs on, and whether an OpenMP thread that waits at a barrier spins (the default) or
sleeps.

    .venv-e2e/bin/python benchmarks/threads_under_load.py --model .venv-e2e/models/SmolLM2-135M-Instruct

Each measurement is a fresh process (its OpenMP settings are read once, at start) that trains the model for --steps
steps of one fixed batch (forward, backward, AdamW, as a Stage 1 step), then decodes 32 tokens greedily for each of
the batch's prompts --steps times (as a rollout or an evaluation), and reports the median time of each after a
warm-up one. The settings alternate within each round, alone and then beside --busy single-threaded busy loops at
the same priority, so a change in the machine's other load falls on every setting. The table: median seconds a step
alone and under load, and their ratio (the slowdown). Measured numbers:
docs/development.md#openmp-threads-beside-other-busy-processes."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# name -> environment on top of the caller's. torch's Linux wheels use GNU OpenMP: OMP_WAIT_POLICY=PASSIVE makes a
# thread that reaches a barrier first sleep at once instead of spinning (GOMP_SPINCOUNT) and burning its CPU share.
SETTINGS = {
    "2 threads (default)": {"OMP_NUM_THREADS": "2"},
    "2 threads, passive wait": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}

WORK = {"train": "a training step", "decode": "32 greedy tokens"}

CHILD = r"""
import json, statistics, sys, time, torch
from transformers import AutoModelForCausalLM
model_path, batch, length, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float32)
model.train()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
ids = torch.randint(0, model.config.vocab_size, (batch, length))
times = []
for _ in range(steps + 1):  # the first step (allocation, warm-up) is not counted
    start = time.perf_counter()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    times.append(time.perf_counter() - start)
model.eval()
decode = []
with torch.no_grad():  # greedy decoding: many small operations, where a sleeping OpenMP thread costs most to wake
    for _ in range(steps + 1):
        start = time.perf_counter()
        model.generate(ids[:, :16], max_new_tokens=32, min_new_tokens=32, do_sample=False, pad_token_id=0)
        decode.append(time.perf_counter() - start)
print(json.dumps({"train": statistics.median(times[1:]), "decode": statistics.median(decode[1:]),
                  "threads": torch.get_num_threads()}))
"""


def measure(args, env_extra: dict) -> dict:
    env = {**os.environ, **env_extra, "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-c", CHILD, args.model, str(args.batch), str(args.length),
                           str(args.steps)], env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"threads_under_load: a measurement failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="local model folder (transformers)")
    p.add_argument("--busy", type=int, default=2, help="busy processes beside the loaded measurements (default 2)")
    p.add_argument("--rounds", type=int, default=2, help="measurements per setting and load, alternating")
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement, after one warm-up step")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=128, help="tokens per sequence")
    args = p.parse_args(argv)

    results = {(name, load, work): [] for name in SETTINGS for load in ("alone", "loaded") for work in WORK}
    for round_ in range(args.rounds):
        for load in ("alone", "loaded"):
            busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in
                    range(args.busy if load == "loaded" else 0)]
            try:
                time.sleep(1 if busy else 0)
                for name, env in SETTINGS.items():
                    result = measure(args, env)
                    for work in WORK:
                        results[name, load, work].append(result[work])
                    print(f"round {round_ + 1} {load:6s} {name:26s} train {result['train']:.2f} s, decode "
                          f"{result['decode']:.2f} s ({result['threads']} torch threads)", flush=True)
            finally:
                for proc in busy:
                    proc.kill()
                    proc.wait()

    print(f"\n{args.model}: batch {args.batch} x {args.length} tokens, median of {args.rounds} measurements of "
          f"{args.steps} steps; loaded = beside {args.busy} busy processes")
    print("| setting | work | alone (s) | loaded (s) | slowdown |")
    print("|---|---|---|---|---|")
    for name in SETTINGS:
        for work, what in WORK.items():
            alone, loaded = (statistics.median(results[name, load, work]) for load in ("alone", "loaded"))
            print(f"| {name} | {what} | {alone:.2f} | {loaded:.2f} | {loaded / alone:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
