"""Data-parallel training on torch.distributed: under ``torchrun`` or the built-in ``--nproc N``.

The trainer (retraining, supernet training) and DARTS use these helpers; nothing else knows
about ranks. The contract:

* a process group exists only while :func:`process_group` is open; gloo for CPU tensors, NCCL
  for CUDA ones (``cpu:gloo,cuda:nccl``), one GPU per local rank;
* the *global* batch of a recipe is split across ranks (:func:`shard`), every rank draws the same
  global batch from ``(seed, step)`` and keeps its slice, and DDP averages the gradients, so k
  steps on N processes give the weights of k steps in one process (up to float summation order);
* rank 0 alone reads and writes files; what it read reaches the others by broadcast
  (:func:`on_main`), so a run resumes identically on every rank and a bad input is one error
  on every rank instead of a hang;
* :func:`launch` starts N local processes the way torchrun would (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and returns rank 0's result.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing as mp
import os
import socket
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from acla_nas.core.errors import ReplicatedError, UserError

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
TIMEOUT = timedelta(minutes=30)  # rank 0 may evaluate on the test set while the others wait


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def from_env() -> Rank:
    """The rank torchrun (or :func:`launch`) gave this process; a single process without them."""
    if "WORLD_SIZE" not in os.environ:
        return Rank()
    try:
        world = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UserError(
            "expected integers in RANK, WORLD_SIZE and LOCAL_RANK (as torchrun sets them)", field="WORLD_SIZE"
        ) from None
    if world < 1 or not 0 <= rank < world:
        raise UserError(f"expected 0 <= RANK < WORLD_SIZE, got RANK={rank}, WORLD_SIZE={world}", field="WORLD_SIZE")
    return Rank(rank, world, local)


def current() -> Rank:
    """This process's rank in the open process group (a single process when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Rank()
    return Rank(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def is_main() -> bool:
    """Rank 0 of the open process group, or of the torchrun job once the group is left."""
    r = current()
    return r.main if r.enabled else from_env().main


def _uses_cuda(device: str | None) -> bool:
    return torch.cuda.is_available() and (device in (None, "", "auto") or str(device).startswith("cuda"))


def _import_group_defaults() -> None:
    """Import, before any group exists, the torch modules that DDP imports on first use.

    Some of them evaluate ``group.WORLD`` in default arguments at import time
    (``torch.distributed.nn.functional``, reached through ``torch._dynamo``). Imported inside a
    group, they keep it alive after ``destroy_process_group``: its gloo threads outlive the
    group, and a worker still releasing a finished collective's tensors while the interpreter
    shuts down aborts the process ("terminate called without an active exception", seen on a
    loaded machine). Imported first, they hold ``None``, and leaving the group joins the threads.
    DDP's construction imports the same modules, so this costs a training process nothing."""
    import torch._dynamo  # noqa: F401
    import torch.distributed.nn  # noqa: F401


@contextlib.contextmanager
def process_group(device: str | None) -> Iterator[Rank]:
    """Join the process group described by the environment for the block (no-op for one process)."""
    r = from_env()
    if not r.enabled or (dist.is_available() and dist.is_initialized()):
        yield current() if r.enabled else r
        return
    _import_group_defaults()
    backend = "gloo"
    if _uses_cuda(device):
        torch.cuda.set_device(r.local % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend=backend, rank=r.rank, world_size=r.world, timeout=TIMEOUT)
    try:
        yield r
    except BaseException:
        leave(together=False)  # a peer may be gone: waiting for it could hang
        raise
    leave()


def leave(together: bool = True) -> None:
    """Leave the process group (after the data-parallel part; later work runs on rank 0 alone).

    ``together``: every rank waits at a barrier first, so no rank tears its connections down
    while a peer still works in the group (rank 0 writes files after the last collective).
    The group's gloo threads are joined here only if nothing else holds the group: see
    :func:`_import_group_defaults`; a test checks that no gloo thread outlives it."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if together and dist.get_world_size() > 1:
        dist.barrier()
    gc.collect()  # a DDP wrapper caught in a reference cycle still holds the group
    dist.destroy_process_group()


def device_for(device: torch.device) -> torch.device:
    """Under DDP each rank drives its own GPU: ``cuda`` means ``cuda:LOCAL_RANK``."""
    r = current()
    if r.enabled and device.type == "cuda":
        return torch.device("cuda", r.local % torch.cuda.device_count())
    return device


#: ``ACLA_NAS_SYNC_BN=0`` turns the global-batch BatchNorm statistics off (to measure what they change)
SYNC_BN_ENV = "ACLA_NAS_SYNC_BN"


def wrap(model: nn.Module, device: torch.device, find_unused: bool = False, sync_bn: bool | None = None) -> nn.Module:
    """``model`` in DistributedDataParallel (parameters broadcast from rank 0), or as is. Its
    BatchNorm layers first compute global-batch statistics (``sync_bn``; see
    :mod:`acla_nas.runtime.sync_bn`), so the processes train what one process would."""
    if not current().enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if sync_bn is None:
        sync_bn = os.environ.get(SYNC_BN_ENV, "1").strip() not in ("0", "false", "no", "off")
    if sync_bn:
        from acla_nas.runtime.sync_bn import sync_batchnorm

        model, _ = sync_batchnorm(model, device)

    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def check_batch(batch: int, field: str) -> None:
    """The global batch must split evenly, or the averaged gradient is not the global one."""
    r = current()
    if r.enabled and batch % r.world:
        raise UserError(
            f"the batch {batch} does not split evenly over {r.world} processes; use a multiple of {r.world}",
            field=field,
        )


def shard(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """This rank's slice of a global batch (the whole batch for one process)."""
    r = current()
    if not r.enabled:
        return tuple(tensors)
    n = tensors[0].shape[0] // r.world
    return tuple(t[r.rank * n : (r.rank + 1) * n] for t in tensors)


def mean(value: torch.Tensor) -> float:
    """The mean of a per-rank scalar over ranks (the global-batch loss), the same on every rank."""
    if not current().enabled:
        return float(value)
    t = value.detach().reshape(1).to(torch.float64).clone()
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()


def average_gradients(params: Sequence[nn.Parameter]) -> None:
    """Average ``.grad`` over ranks (for parameters outside the DDP module, e.g. DARTS's)."""
    if not current().enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not current().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` for one process)."""
    if not current().enabled:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def on_main(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` on rank 0 only; its result, or its UserError, on every rank."""
    r = current()
    if not r.enabled:
        return fn(*args, **kwargs)
    outcome: tuple[str, Any] = ("ok", None)
    if r.main:
        try:
            outcome = ("ok", fn(*args, **kwargs))
        except UserError as exc:
            outcome = ("error", (exc.message, exc.file, exc.field))
    outcome = broadcast(outcome)
    if outcome[0] == "error":
        message, file, field = outcome[1]
        raise (UserError if r.main else ReplicatedError)(message, file=file, field=field)
    return outcome[1]


def barrier() -> None:
    if current().enabled:
        dist.barrier()


# --------------------------------------------------------------------------- the launcher


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child(
    rank: int,
    world: int,
    port: int,
    device: str | None,
    fn: Callable[..., Any],
    args: tuple,
    queue: Any,
    allowed: tuple[str, ...] = (),
) -> None:
    from acla_nas.core.trust import allow_imports

    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    if not _uses_cuda(device):
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))  # the ranks share the cores
    try:
        with allow_imports(allowed), process_group(device):  # the imports the user allowed the launcher
            result = fn(*args)
        queue.put((rank, "ok", result if rank == 0 else None))
    except UserError as exc:
        queue.put((rank, "user", (exc.message, exc.file, exc.field, isinstance(exc, ReplicatedError))))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which re-raises
        queue.put((rank, "crash", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def launch(nproc: int, fn: Callable[..., Any], args: tuple = (), device: str | None = None) -> Any:
    """Run ``fn(*args)`` in ``nproc`` new local processes forming one process group; returns
    rank 0's result. A UserError in any rank is raised here (one line); a crash stops the rest."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise UserError(f"expected a positive integer, got {nproc!r}", field="--nproc")
    if from_env().enabled:
        raise UserError(
            "already running under torchrun; leave --nproc out (torchrun starts the processes)", field="--nproc"
        )
    from acla_nas.core.trust import allowed_prefixes

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    allowed = allowed_prefixes()
    procs = [ctx.Process(target=_child, args=(r, nproc, port, device, fn, args, queue, allowed)) for r in range(nproc)]
    for p in procs:
        p.start()
    results: dict[int, tuple[str, Any]] = {}
    try:
        while len(results) < nproc:
            try:
                rank, kind, payload = queue.get(timeout=1.0)
            except Exception:  # noqa: BLE001 - queue.Empty: check for ranks that died without a word
                dead = [i for i, p in enumerate(procs) if p.exitcode is not None and i not in results]
                if dead:
                    raise RuntimeError(
                        f"rank {dead[0]} of --nproc {nproc} died (exit code {procs[dead[0]].exitcode})"
                    ) from None
                continue
            results[rank] = (kind, payload)
            if kind != "ok":
                break
    finally:
        failed = any(kind != "ok" for kind, _ in results.values()) or len(results) < nproc
        for p in procs:
            if failed and p.is_alive():
                p.terminate()
            p.join()
    for rank in sorted(results, key=lambda r: (results[r][0] == "ok", results[r][0] == "user" and results[r][1][3], r)):
        kind, payload = results[rank]
        if kind == "user":
            raise UserError(payload[0], file=payload[1], field=payload[2])
        if kind == "crash":
            raise RuntimeError(f"rank {rank} of --nproc {nproc} failed: {payload}")
    return results[0][1]


__all__ = [
    "Rank",
    "ReplicatedError",
    "average_gradients",
    "barrier",
    "broadcast",
    "check_batch",
    "current",
    "device_for",
    "from_env",
    "gather",
    "is_main",
    "launch",
    "leave",
    "mean",
    "on_main",
    "process_group",
    "shard",
    "wrap",
]
