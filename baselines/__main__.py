from baselines.cli import run

raise SystemExit(run())
