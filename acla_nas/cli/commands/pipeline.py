"""``acla-nas pipeline SPACE.yaml --strategy STRATEGY.yaml --out RUN_DIR``: the whole job."""

from __future__ import annotations

import argparse

NAME = "pipeline"
HELP = "search -> export -> retrain (plain, paper placement, discovered) -> evaluate -> plots"
DESCRIPTION = (
    "Run the whole job and print the final table. Re-running the same command resumes at the stage where it stopped."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from acla_nas.cli.commands.search import add_arguments as add_search_arguments

    add_search_arguments(p)  # the search stage takes the same arguments as `acla-nas search`
    p.add_argument("--retrain-steps", type=int, help="training steps of each retrained model (default 1500)")
    p.add_argument("--retrain-batch", type=int, help="batch size of the retraining (default 8)")
    p.add_argument("--retrain-patch", type=int, help="HR patch size of the retraining (default 48)")


def run(args: argparse.Namespace) -> int:
    from acla_nas.pipeline import check_recipe, format_table, pipeline, refuse_torchrun

    refuse_torchrun()  # before any file is read: the pipeline starts its own processes
    retrain = {
        k: v
        for k, v in (("steps", args.retrain_steps), ("batch", args.retrain_batch), ("patch", args.retrain_patch))
        if v is not None
    }
    recipe = check_recipe(retrain)
    from acla_nas.search.config import RunConfig

    cfg = RunConfig.from_args(args)
    res = pipeline(cfg, recipe=recipe, progress=not args.quiet)
    space = cfg.space
    print()
    print(
        format_table(
            res.table,
            tuple(space.spec.input_size),
            "embedded test split" if space.spec.data.get("kind", "embedded") == "embedded" else str(space.spec.data),
        )
    )
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in res.seconds.items())
    print(f"\nstages: {timing}; results in {res.run_dir} (final_table.csv, report.html, plots/)")
    return 0
