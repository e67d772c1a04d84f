"""``acla-nas dashboard RUN_DIR``: the run's Optuna study in optuna-dashboard, on 127.0.0.1.

optuna-dashboard (the ``dashboard`` extra) already shows a study's history, parameter importances,
slices and Pareto fronts; this verb only opens the right storage for a run directory (its journal
through the same lock the search uses, or ``--storage`` as the search had it), checks that it
holds the run's study, prints the study's address and serves until Ctrl-C. It listens on the
loopback interface unless ``--host`` says otherwise, since the dashboard can also edit the study.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from acla_nas.core.errors import UserError

NAME = "dashboard"
HELP = "serve a run's Optuna study in optuna-dashboard on 127.0.0.1 (the dashboard extra)"
INSTALL = "optuna-dashboard is not installed; pip install 'acla-nas[dashboard]'"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="search run directory (multi-trial strategies: random, tpe, evolution, nni:*)",
    )
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0 picks a free one)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument(
        "--storage", default=None, metavar="URL", help="the study's storage when the search used --storage"
    )


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UserError(f"expected a port in 0..65535, got {args.port}", field="--port")
    try:
        import optuna_dashboard
    except ImportError:
        raise UserError(INSTALL) from None
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from acla_nas.search.storage.backend import parse_storage
    from acla_nas.search.storage.store import TrialStore
    from acla_nas.search.storage.study import load_run_study

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserError("not a search run directory (no config.yaml)", file=str(run_dir))
    store = TrialStore(load_run_study(run_dir, args.storage))  # checks that the storage holds this run's study
    spec = parse_storage(args.storage if args.storage is not None else _stored_storage(run_dir), run_dir)
    app = optuna_dashboard.wsgi(store.storage)

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *a: object) -> None:  # noqa: A002 - wsgiref's signature
            pass

    try:
        server = make_server(args.host, args.port, app, handler_class=Quiet)
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", field="--port") from None
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{server.server_port}/dashboard/studies/{store.study_id}"
    # The server runs in a thread and the main thread waits for Ctrl-C or `kill PID`: raising
    # KeyboardInterrupt from a signal handler is not enough, since wsgiref's handler catches every
    # exception of a request in progress (answering 500) and would serve on forever.
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    print(f"study {store.study.study_name!r} of {run_dir} ({spec.shown}) at {url}  (Ctrl-C stops)", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.shutdown()  # lets a request in progress finish
        thread.join()
        server.server_close()
    print("dashboard stopped", file=sys.stderr)
    return 0


def _stored_storage(run_dir: Path) -> str | None:
    from acla_nas.nn.arch import read_yaml

    config = read_yaml(run_dir / "config.yaml")
    return config.get("storage") if isinstance(config, dict) else None
