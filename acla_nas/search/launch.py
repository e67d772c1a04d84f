"""Which processes run a search: the one decision, taken before anything is read or trained.

* under torchrun (``WORLD_SIZE`` set): this process is one rank; it joins the process group,
  rank 0 alone prepares (reads the files, checks, claims the run directory), and every rank
  receives the prepared plan whole (pickled) and executes it;
* ``--nproc N`` (N > 1): the plan is prepared here, then N ranks are started by the built-in
  launcher (:func:`acla_nas.runtime.distributed.launch`), each executing the same plan;
* otherwise one process prepares and executes; ``--workers N`` adds N - 1 local trial processes
  inside the execution (on rank 0 of any of the above, once the data-parallel part is done).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from acla_nas.core.errors import UserError
from acla_nas.runtime import distributed
from acla_nas.search.flags import SearchFlags

P = TypeVar("P")


def launch(flags: SearchFlags, prepare: Callable[[], P], execute: Callable[[P], Any]) -> Any:
    """``execute(prepare())`` in the processes ``flags`` and the environment ask for; returns
    rank 0's result (None on the other ranks of a torchrun job). ``execute`` must pickle (a
    module-level function or a partial of one) for ``--nproc``."""
    device = str(flags.target)  # picks the process group's backend (NCCL for CUDA)
    if distributed.from_env().enabled:
        if flags.nproc > 1:
            raise UserError(
                "already running under torchrun; leave --nproc out (torchrun starts the processes)", field="--nproc"
            )
        with distributed.process_group(device):
            return execute(distributed.on_main(prepare))  # rank 0 prepares; its UserError on every rank
    plan = prepare()  # checked before any process starts
    if flags.nproc > 1:
        return distributed.launch(flags.nproc, execute, (plan,), device=device)
    return execute(plan)


__all__ = ["launch"]
