"""Soak test: MT10 with tiny networks under periodic SIGKILL + resume and killed env workers.

    python bench/soak.py --minutes 30 --json bench/results/soak.json

One `train.py` run (MT10, 2x32 networks, async env workers, 100-step episodes, a checkpoint
every 200 steps) trains for `--minutes` of wall-clock. Every `--kill-every` seconds (once it has
written a checkpoint since it started) the training process is SIGKILLed and started again with
the same command; in the second half, every `--worker-kill-every` seconds one env worker (a
random task's) is SIGKILLed as well. At the end the run is stopped with SIGTERM at some step S,
and a reference run of the same config trains uninterrupted to the last checkpoint written
before the first killed worker. Checked:
- the logs are gapless: `train.jsonl` has one record per `log_freq` steps and `eval.jsonl` one
  per `eval_freq` steps up to S, in order, no step twice, every loss finite;
- they equal the reference's (all but the `perf/` timings) up to the last checkpoint written
  before the first killed worker: SIGKILL + resume restores a run exactly, while a killed
  worker drops its task's episode and the run goes on from there on its own;
- every killed worker was logged and replaced, and the run went on;
- memory does not grow: the resident memory of the training process and of its workers,
  sampled every 10 s, from the first minute of each sitting to its end.
Prints a table and writes JSON. Interrupted, the same command resumes it: the sittings so far
are kept in `soak_state.json` in the work folder, and train.py resumes both runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
LOG_FREQ, EVAL_FREQ, SAVE_FREQ = 100, 500, 200
OVERRIDES = [
    "--config.env.vector_strategy=async",
    "--config.env.max_episode_steps=100",
    "--config.experiment.num_train_steps=100000000",
    f"--config.experiment.log_freq={LOG_FREQ}",
    f"--config.experiment.eval_freq={EVAL_FREQ}",
    f"--config.experiment.save_freq={SAVE_FREQ}",
    "--config.experiment.num_eval_episodes=1",
    "--config.experiment.init_steps=200",
    "--config.replay_buffer.capacity=200000",
    "--config.replay_buffer.batch_size=320",
    *(f"--config.agent.{net}.{key}={value}" for net in ("actor", "critic")
      for key, value in (("hidden_dim", 32), ("num_layers", 2))),
]


def command(workdir: pathlib.Path, *extra: str) -> list[str]:
    return [sys.executable, "train.py", "--config=configs/metaworld_mt10.py", f"--workdir={workdir}", *OVERRIDES, *extra]


def children(pid: int) -> list[int]:
    """The direct child processes of `pid` (Linux /proc)."""
    found = []
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def descendants(pid: int) -> list[int]:
    pending, found = [pid], []
    while pending:
        found += (kids := children(pending.pop()))
        pending += kids
    return found


def name(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def checkpoints(workdir: pathlib.Path) -> list[int]:
    folder = workdir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def read_jsonl(path: pathlib.Path) -> list[dict]:
    if not path.exists():
        return []
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("perf/")}
            for line in path.read_text().splitlines() if line.strip()]


def soak(workdir: pathlib.Path, minutes: float, kill_every: float, worker_kill_every: float, seed: int) -> dict:
    state_path = workdir.parent / "soak_state.json"
    state = (json.loads(state_path.read_text()) if state_path.exists()
             else {"sittings": [], "worker_kills": [], "first_worker_kill_checkpoint": None})
    sittings, worker_kills = state["sittings"], state["worker_kills"]
    rng = random.Random(seed + len(worker_kills))
    deadline = time.time() + 60 * minutes - sum(s["seconds"] for s in sittings)
    next_worker_kill = max(deadline - 30 * minutes, time.time()) + worker_kill_every
    output = open(workdir.parent / "soak.out", "a")
    while time.time() < deadline:  # a rerun after the last sitting only reports
        started, samples, next_sample = time.time(), [], time.time()
        process = subprocess.Popen(command(workdir), cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
        first_checkpoints = checkpoints(workdir)
        ending = None
        while process.poll() is None:
            time.sleep(1.0)
            now = time.time()
            if now >= next_sample:
                samples.append((now - started, rss_mib([process.pid, *descendants(process.pid)])))
                next_sample = now + 10.0
            if now >= deadline:
                process.send_signal(signal.SIGTERM)
                ending = "sigterm"
                break
            if now >= next_worker_kill:
                workers = [pid for pid in descendants(process.pid) if name(pid).startswith("train-env-")]
                if workers:
                    victim = rng.choice(workers)
                    os.kill(victim, signal.SIGKILL)
                    worker_kills.append({"sitting": len(sittings), "time_s": now - started, "worker": name(victim)})
                    if state["first_worker_kill_checkpoint"] is None:
                        state["first_worker_kill_checkpoint"] = (checkpoints(workdir) or [0])[-1]
                    next_worker_kill = now + worker_kill_every
            if now - started >= kill_every and checkpoints(workdir) != first_checkpoints:
                process.send_signal(signal.SIGKILL)
                ending = "sigkill"
                break
        returncode = process.wait(timeout=600)
        sittings.append({"seconds": time.time() - started, "ending": ending or f"exit {returncode}",
                         "rss_mib": samples})
        state_path.write_text(json.dumps(state))
        if ending != "sigkill":
            break
    output.close()
    return state


def check(workdir: pathlib.Path, reference: pathlib.Path, stop_step: int, compare_to: int) -> dict:
    train, evals = read_jsonl(workdir / "train.jsonl"), read_jsonl(workdir / "eval.jsonl")
    want_train = list(range(LOG_FREQ, stop_step + 1, LOG_FREQ))
    want_eval = list(range(EVAL_FREQ, stop_step + 1, EVAL_FREQ))
    finite = all(math.isfinite(v) for r in train for k, v in r.items() if k.startswith("train/") and isinstance(v, float))
    ref_train = [r for r in read_jsonl(reference / "train.jsonl") if r["step"] <= compare_to]
    # the reference's last step has an evaluation of its own unless it is a multiple of EVAL_FREQ
    ref_eval = [r for r in read_jsonl(reference / "eval.jsonl") if r["step"] <= compare_to and r["step"] % EVAL_FREQ == 0]
    return {
        "gapless": [r["step"] for r in train] == want_train and [r["step"] for r in evals] == want_eval,
        "finite": finite,
        "compared_up_to_step": compare_to,
        "identical_to_reference": ([r for r in train if r["step"] <= compare_to] == ref_train
                                   and [r for r in evals if r["step"] <= compare_to] == ref_eval),
        "records_compared": len(ref_train) + len(ref_eval),
    }


def growth(sittings: list[dict]) -> dict:
    """Resident memory after the first minute of each sitting against its last sample."""
    rows = []
    for sitting in sittings:
        settled = [rss for t, rss in sitting["rss_mib"] if t >= 60]
        if len(settled) >= 2:
            rows.append({"first_mib": settled[0], "last_mib": settled[-1], "max_mib": max(settled)})
    return {"per_sitting": rows, "max_ratio_last_to_first": max((r["last_mib"] / r["first_mib"] for r in rows), default=None)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--kill-every", type=float, default=240.0, help="seconds between SIGKILLs of train.py")
    parser.add_argument("--worker-kill-every", type=float, default=180.0, help="seconds between killed workers")
    parser.add_argument("--seed", type=int, default=0, help="which workers are killed")
    parser.add_argument("--workdir", type=pathlib.Path, help="default: a new temporary folder")
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args(argv)
    root = args.workdir or pathlib.Path(tempfile.mkdtemp(prefix="soak-"))
    root.mkdir(parents=True, exist_ok=True)
    run, reference = root / "soaked", root / "reference"
    result = soak(run, args.minutes, args.kill_every, args.worker_kill_every, args.seed)
    stop_step = max(r["step"] for r in read_jsonl(run / "train.jsonl"))
    log = (root / "soak.out").read_text()
    restarts_logged = sum(1 for line in log.splitlines() if "a new worker took its place" in line)
    # a worker killed in the last seconds of a sitting may go unnoticed: the sitting ended first
    noticed = sum(kill["time_s"] + 5.0 < result["sittings"][kill["sitting"]]["seconds"] for kill in result["worker_kills"])
    compare_to = result["first_worker_kill_checkpoint"] or stop_step
    started = time.time()
    subprocess.run(command(reference, f"--config.experiment.num_train_steps={compare_to}"), cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result.update({
        "minutes": args.minutes, "stop_step": stop_step, "reference_seconds": time.time() - started,
        "process_kills": sum(s["ending"] == "sigkill" for s in result["sittings"]),
        "worker_restart_lines": restarts_logged, "worker_kills_before_their_sittings_last_5_s": noticed,
        "checks": check(run, reference, stop_step, compare_to),
        "memory": growth(result["sittings"]),
        "command": " ".join(["python bench/soak.py", *(argv if argv is not None else sys.argv[1:])]),
    })
    first_kill_sitting = result["worker_kills"][0]["sitting"] if result["worker_kills"] else len(result["sittings"])
    result["process_kills_before_first_worker_kill"] = sum(
        s["ending"] == "sigkill" for s in result["sittings"][:first_kill_sitting])
    checks, memory = result["checks"], result["memory"]
    print("| tried | count | survived |\n|---|---|---|")
    print(f"| SIGKILL of train.py, then the same command | {result['process_kills']} | "
          f"resumed each time; logs gapless: {checks['gapless']} |")
    print(f"| SIGKILL of an env worker | {len(result['worker_kills'])} | "
          f"restart lines logged: {result['worker_restart_lines']} (kills 5 s or more before their sitting ended: "
          f"{noticed}); losses finite: {checks['finite']} |")
    print(f"| logs against an uninterrupted run, to step {checks['compared_up_to_step']} "
          f"(across {result['process_kills_before_first_worker_kill']} SIGKILL + resume) | "
          f"{checks['records_compared']} records | identical: {checks['identical_to_reference']} |")
    print(f"| resident memory, last / first-after-1-min per sitting | {len(memory['per_sitting'])} sittings | "
          f"max ratio {memory['max_ratio_last_to_first']} |")
    print(f"steps trained: {stop_step} in {args.minutes} min")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
