"""xenobench: submit models to a XenoBench site and follow them from a terminal.

    xenobench login [--url URL] [--username NAME]
    xenobench phases
    xenobench download CHALLENGE/TASK [--dest DIR]
    xenobench submit --phase ID MODEL_FILE [--method NAME] [--wait]
    xenobench status ID
    xenobench logs ID
    xenobench results ID [--cases]
    xenobench leaderboard PHASE_ID [--format table|csv|json]
    xenobench quota PHASE_ID

The site and token come from XENOBENCH_URL / XENOBENCH_TOKEN or from
~/.config/xenobench/config.json (written by `xenobench login`). Exit status: 0 success,
1 error (message on stderr), 2 `submit --wait` ended in a failed/cancelled/timed-out status.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from .client import Api, CliError, load_config, save_config, stderr

FINAL = {"succeeded", "failed", "cancelled", "timed_out"}
LB_COLUMNS = (
    "rank tier team method dsc dsc_ci_low dsc_ci_high nsd n_cases n_failed submission_id"
).split()


def api_from_config(need_token: bool = True) -> Api:
    cfg = load_config()
    if need_token and not cfg.get("token"):
        raise CliError("not logged in: run `xenobench login` or set XENOBENCH_TOKEN")
    return Api(cfg["url"], cfg.get("token"))


def cmd_login(args) -> int:
    cfg = load_config()
    url = args.url or cfg["url"]
    username = args.username or input("user name: ")
    password = os.environ.get("XENOBENCH_PASSWORD") or getpass.getpass("password: ")
    token = Api(url, None).post_form("/api/token/", {"username": username, "password": password})
    path = save_config(url, token["token"])
    print(f"logged in to {url} as {username}; token saved in {path}")
    return 0


def _progress(sent: int, total: int) -> None:
    pct = 100 * sent // total if total else 100
    stderr(f"\ruploading: {sent / 2**20:7.1f} / {total / 2**20:.1f} MB ({pct:3d}%)", end="")
    if sent >= total:
        stderr("")


def _status_line(s: dict) -> str:
    line = f"#{s['id']} {s['status']}"
    if s.get("progress_total"):
        line += f" {s['progress_done']}/{s['progress_total']} cases"
    if s.get("status_reason"):
        line += f" - {s['status_reason']}"
    return line


def cmd_submit(args) -> int:
    api = api_from_config()
    path = Path(args.model_file)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    fields = {"method_name": args.method or path.stem, "description": args.description or ""}
    # The server refuses a body above the phase's cap before reading it (HTTP 413), which a
    # streaming client only sees as a closed connection: say it before sending.
    limit_mb = api.get(f"/api/phases/{args.phase}/").get("max_upload_mb")
    if limit_mb and path.stat().st_size > limit_mb * 2**20:
        raise CliError(
            f"{path.name} is {path.stat().st_size / 2**20:.1f} MB; "
            f"this phase accepts at most {limit_mb} MB"
        )
    sub = api.upload(
        f"/api/phases/{args.phase}/submit/",
        fields,
        "model",
        path,
        progress=None if args.quiet else _progress,
    )
    print(f"submission #{sub['id']} queued ({sub['model_format']}, sha256 {sub['sha256'][:16]})")
    if not args.wait:
        return 0
    last = None
    deadline = time.monotonic() + args.timeout
    while True:
        s = api.get(f"/api/submissions/{sub['id']}/")
        line = _status_line(s)
        if line != last:
            print(line, flush=True)
            last = line
        if s["status"] in FINAL:
            if s.get("mean_dsc") is not None:
                print(f"mean DSC {s['mean_dsc']:.4f}  mean NSD {s['mean_nsd']:.4f}")
            return 0 if s["status"] == "succeeded" else 2
        if time.monotonic() > deadline:
            raise CliError(f"still {s['status']} after {args.timeout:.0f} s; check later")
        time.sleep(args.interval)


def cmd_status(args) -> int:
    s = api_from_config().get(f"/api/submissions/{args.id}/")
    print(_status_line(s))
    for key in (
        "method_name",
        "phase",
        "team",
        "created_at",
        "finished_at",
        "model_format",
        "counts_against_quota",
    ):
        print(f"  {key}: {s.get(key)}")
    if s.get("log"):
        print("  log (end):\n    " + "\n    ".join(s["log"].splitlines()[-10:]))
    return 0


def cmd_logs(args) -> int:
    s = api_from_config().get(f"/api/submissions/{args.id}/")
    print(_status_line(s), file=sys.stderr)
    if "log" not in s:
        raise CliError("the model's log is not shown to participants in this phase")
    sys.stdout.write(s["log"] if s["log"].endswith("\n") or not s["log"] else s["log"] + "\n")
    return 0


def cmd_phases(args) -> int:
    phases = list(api_from_config(need_token=False).paginate("/api/phases/"))
    if not phases:
        print("no phases you can see")
    for p in phases:
        state = "open" if p["is_open"] else "closed"
        print(f"{p['id']:>6}  {p['challenge']}/{p['task']}/{p['slug']}  {state}  {p['title']}")
        if p.get("contract"):
            print(f"        input {p['contract']['input']}; output {p['contract']['output']}")
    return 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe_relative(name: str) -> Path:
    """A server-given file name as a path inside the destination (never outside it)."""
    rel = Path(name)
    if rel.is_absolute() or not rel.parts or any(p in ("..", "") for p in rel.parts):
        raise CliError(f"refusing the file name {name!r} (outside the download folder)")
    return rel


def cmd_download(args) -> int:
    """Every training file of a task, resumable, each checked against SHA256SUMS."""
    challenge, _, task = args.task.strip("/").partition("/")
    if not challenge or not task or "/" in task:
        raise CliError("name the task as CHALLENGE/TASK, e.g. xeno-demo/pig-to-human")
    api = api_from_config()
    base = f"/c/{challenge}/{task}/"
    listing = api.get(base + "data.json")
    sums_text = api.get_text(base + "SHA256SUMS")
    expected = {}
    for line in sums_text.splitlines():
        digest, _, name = line.partition("  ")
        if digest and name:
            expected[name] = digest
    dest = Path(args.dest or f"{challenge}-{task}-training")
    dest.mkdir(parents=True, exist_ok=True)
    fetched = present = 0
    files = listing["files"]
    for i, f in enumerate(files, 1):
        rel = _safe_relative(f["path"])
        want = expected.get(f["path"])
        if want is None:
            raise CliError(f"{f['path']} is not in SHA256SUMS; try again later")
        target = dest / rel
        if target.is_file() and target.stat().st_size == f["size"] and _sha256(target) == want:
            present += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        for attempt in (1, 2):
            if part.exists() and part.stat().st_size > f["size"]:
                part.unlink()
            label = f"[{i}/{len(files)}] {f['path']}"
            progress = None if args.quiet else _bar(label)
            api.download(f["url"], part, progress)
            if _sha256(part) == want:
                break
            part.unlink()  # corrupt: the second attempt starts from scratch
            if attempt == 2:
                raise CliError(f"{f['path']}: checksum mismatch twice; try again later")
        part.replace(target)
        fetched += 1
    (dest / "SHA256SUMS").write_text(sums_text, encoding="utf-8")
    print(
        f"{len(files)} files in {dest} ({fetched} downloaded, {present} already there), "
        "all match SHA256SUMS"
    )
    return 0


def _bar(label: str):
    def show(done: int, total: int) -> None:
        pct = 100 * done // total if total else 100
        stderr(f"\r{label}: {done / 2**20:.1f} / {total / 2**20:.1f} MB ({pct:3d}%)", end="")
        if done >= total:
            stderr("")

    return show


def cmd_results(args) -> int:
    api = api_from_config()
    s = api.get(f"/api/submissions/{args.id}/")
    print(_status_line(s))
    if s.get("mean_dsc") is not None:
        print(
            f"mean DSC {s['mean_dsc']:.4f}  mean NSD {s['mean_nsd']:.4f}  "
            f"failed cases {s['n_cases_failed']}"
        )
    elif s["status"] == "succeeded":
        print("scores are hidden in this phase until the organizers publish them")
    if args.cases:
        rows = list(api.paginate(f"/api/submissions/{args.id}/cases/"))
        w = csv.writer(sys.stdout)
        w.writerow(["case_id", "subject", "species", "tissue_state", "ok", "dsc", "nsd", "error"])
        for r in rows:
            w.writerow(
                [
                    r["case_id"],
                    r["subject"],
                    r["species"],
                    r["tissue_state"],
                    r["ok"],
                    f"{r['dsc']:.4f}",
                    f"{r['nsd']:.4f}",
                    r["error"],
                ]
            )
    return 0


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def cmd_leaderboard(args) -> int:
    data = api_from_config(need_token=False).get(f"/api/phases/{args.phase}/leaderboard/")
    rows = data["rows"]
    if args.format == "json":
        print(json.dumps(data, indent=2))
    elif args.format == "csv":
        w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else LB_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    else:
        if not rows:
            print("no ranked submissions yet (or none you may see)")
            return 0
        table = [LB_COLUMNS] + [[_fmt(r.get(c)) for c in LB_COLUMNS] for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(LB_COLUMNS))]
        print(f"leaderboard version {data['version']}")
        for row in table:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_quota(args) -> int:
    q = api_from_config().get(f"/api/phases/{args.phase}/quota/")
    print(f"remaining today: {q['remaining_today']} (used {q['used_today']}/{q['per_day']})")
    print(f"remaining in total: {q['remaining_total']} (used {q['used_total']}/{q['total']})")
    print(f"running: {q['running']} (max {q['max_concurrent']}); day resets at {q['resets_at']}")
    print("you can submit now" if q["can_submit"] else f"submission refused now: {q['reason']}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xenobench", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("login", help="get an API token and save it")
    s.add_argument("--url", help="site address, e.g. https://xenobench.example.org")
    s.add_argument("--username")
    s.set_defaults(func=cmd_login)
    s = sub.add_parser("submit", help="upload a model file to a phase")
    s.add_argument("--phase", required=True, type=int, help="phase id (see the phase page)")
    s.add_argument("model_file")
    s.add_argument("--method", help="method name shown on the leaderboard")
    s.add_argument("--description", default="")
    s.add_argument("--wait", action="store_true", help="follow the evaluation until it ends")
    s.add_argument("--interval", type=float, default=2.0, help="seconds between status checks")
    s.add_argument("--timeout", type=float, default=7200.0, help="give up waiting after this")
    s.add_argument("--quiet", action="store_true", help="no upload progress")
    s.set_defaults(func=cmd_submit)
    s = sub.add_parser("status", help="status and progress of a submission")
    s.add_argument("id", type=int)
    s.set_defaults(func=cmd_status)
    s = sub.add_parser("logs", help="your model's log of a submission (where the phase shows it)")
    s.add_argument("id", type=int)
    s.set_defaults(func=cmd_logs)
    s = sub.add_parser("phases", help="phases you can see, with their ids")
    s.set_defaults(func=cmd_phases)
    s = sub.add_parser("download", help="a task's training data, resumable and checked")
    s.add_argument("task", help="CHALLENGE/TASK, as in the task page's address")
    s.add_argument("--dest", help="folder (default: CHALLENGE-TASK-training)")
    s.add_argument("--quiet", action="store_true", help="no progress")
    s.set_defaults(func=cmd_download)
    s = sub.add_parser("results", help="scores of a submission")
    s.add_argument("id", type=int)
    s.add_argument("--cases", action="store_true", help="per-case results as CSV (if shown)")
    s.set_defaults(func=cmd_results)
    s = sub.add_parser("leaderboard", help="a phase's leaderboard")
    s.add_argument("phase", type=int)
    s.add_argument("--format", choices=["table", "csv", "json"], default="table")
    s.set_defaults(func=cmd_leaderboard)
    s = sub.add_parser("quota", help="your remaining submissions in a phase")
    s.add_argument("phase", type=int)
    s.set_defaults(func=cmd_quota)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        stderr(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        stderr("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
