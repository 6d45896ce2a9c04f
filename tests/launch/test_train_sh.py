"""launch/train.sh on a simulated 2-node SLURM allocation (both nodes this machine), and on one machine."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, cli, subprocess_env

FAKE_SLURM = Path(__file__).with_name("fake_slurm")
TRAIN_SH = REPO / "launch" / "train.sh"
TRAIN_ARGS = ["--backbone", "tiny-qwen2-audio", "--think-tokens", "8", "--batch-size", "4", "--workers", "2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("launch-train") / "corpus"
    cli("synth", "--out", root, "--clips", 24, "--shard-size", 6, "--seed", 5)
    cli("extract", "--corpus", root, "--expert", "mel,pitch", "--workers", 0, "--no-progress")
    return root


def _env(tmp_path: Path) -> dict[str, str]:
    state = tmp_path / "slurm-state"
    state.mkdir(exist_ok=True)
    path = f"{FAKE_SLURM}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    return subprocess_env(PATH=path, FAKE_SLURM_STATE=str(state), PYTHONUNBUFFERED="1")


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _submit_and_signal(
    sig: int, run: Path, corpus: Path, env: dict[str, str], extra: tuple[str, ...] = (), steps: int = 30
) -> str:
    """sbatch train.sh; once 3 steps are logged, the scheduler's event: SIGALRM = the time limit is
    `--signal`'s lead time away (the fake sbatch then sends what train.sh's #SBATCH --signal asks for),
    SIGTERM = preemption (every process of the job gets SIGTERM, then SIGKILL after KillWait)."""
    job = subprocess.Popen(
        [
            "sbatch",
            str(TRAIN_SH),
            *TRAIN_ARGS,
            "--corpus",
            str(corpus),
            "--out",
            str(run),
            "--steps",
            str(steps),
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and job.poll() is None:
        if (run / "metrics.jsonl").is_file() and len(_steps(run)) >= 3:
            break
        time.sleep(0.1)
    job.send_signal(sig)
    log, _ = job.communicate(timeout=600)
    assert job.returncode == 0, log[-4000:]
    return log


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGALRM], ids=["preempted", "time-limit"])
def test_two_nodes_stopped_mid_run_checkpoint_requeue_and_finish(sig, corpus, tmp_path):
    run = tmp_path / "run"
    log = _submit_and_signal(sig, run, corpus, _env(tmp_path))
    if sig == signal.SIGALRM:  # the warning train.sh's `#SBATCH --signal=B:USR1@300` asks for, to the batch shell
        assert "time limit near: SIGUSR1 to the batch shell (--signal=B:USR1@300)" in log
    else:
        first_run = log.split(" requeued (restart 1)")[0]  # on a failure, all of what the first run printed
        assert "preempted: SIGTERM to every process of job" in log and "KillWait over" not in log, first_run[-12000:]

    # the allocation: two loopback nodes, one rank each, rendezvous on the first
    assert (run / "hostfile").read_text() == "localhost slots=1\n127.0.0.1 slots=1\n"
    assert "2 node(s), 2 rank(s), rendezvous localhost:" in log
    # every rank stopped at the same step with a checkpoint that is not one of the periodic ones
    stopped = [line for line in log.splitlines() if line.startswith("stopped by SIG")]
    assert len(stopped) == 1, log[:6000] + "\n…\n" + log[-3000:]
    step = int(stopped[0].split("at step ")[1].split(";")[0])
    assert 3 <= step < 30  # periodic checkpoints come every 50 steps (the default), so none of them
    tag = f"step{step:07d}"
    assert {p.name for p in (run / "checkpoints" / tag).glob("rng-rank*.json")} == {"rng-rank0.json", "rng-rank1.json"}
    # requeued (by train.sh on the time-limit warning, by SLURM on preemption) and resumed from there
    assert "requeued (restart 1)" in log
    assert ("requeueing job" in log) == (sig == signal.SIGALRM)
    assert f"resumed from {tag}: step {step}" in log
    assert _steps(run) == list(range(1, 31))
    assert (run / "final" / "adapter").is_dir()


@pytest.mark.slow
def test_preempted_ranks_that_outlast_killwait_are_killed_and_the_requeued_job_resumes(corpus, tmp_path):
    """KillWait shorter than a rank needs to reach its next step: SIGKILL lands mid-step, no stop
    checkpoint is written, and the requeued job resumes from the last periodic one, its later rows dropped."""
    run = tmp_path / "run"
    env = _env(tmp_path) | {"FAKE_SLURM_KILL_WAIT": "0"}
    log = _submit_and_signal(signal.SIGTERM, run, corpus, env, ("--save-every", "2"), steps=12)
    assert "KillWait over: SIGKILL" in log and "requeued (restart 1)" in log
    assert "resumed from step" in log
    assert _steps(run) == list(range(1, 13))  # every step once: the killed run's rows after its checkpoint are gone
    assert (run / "final" / "adapter").is_dir()


@pytest.mark.slow
def test_one_machine_uses_cpu_ranks_and_resumes_a_finished_run(corpus, tmp_path):
    run = tmp_path / "run"
    env = {**_env(tmp_path), "COAT_CPU_RANKS": "2"}
    env.pop("SLURM_JOB_ID", None)
    args = ["bash", str(TRAIN_SH), *TRAIN_ARGS, "--corpus", str(corpus), f"--out={run}", "--steps", "4"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert _steps(run) == [1, 2, 3, 4]
    assert json.loads((run / "ds_config.json").read_text())["zero_optimization"]["stage"] == 2
    assert {p.name for p in (run / "checkpoints" / "step0000004").glob("rng-rank*.json")} == {
        "rng-rank0.json",
        "rng-rank1.json",
    }
    # the same command again: --resume is implied, so it finds the run complete instead of refusing it
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from step0000004: step 4" in again.stdout + again.stderr
    assert _steps(run) == [1, 2, 3, 4]


STAND_IN = Path(__file__).with_name("stand_in")


@pytest.mark.slow
def test_two_tasks_per_node_get_their_local_rank_and_device_and_a_batch_shell_sigterm_reaches_them(tmp_path):
    """2 nodes × 2 tasks, each task a stand-in `coat-pipe` that records what train.sh gave it: RANK and
    WORLD_SIZE global, LOCAL_RANK the task's index on its node (so rank 2 drives cuda:0 of the second
    node), one rendezvous. Then `scancel --batch`: SIGTERM to the batch shell alone, which must pass it
    on to every task (SLURM itself would not)."""
    log = tmp_path / "ranks"
    log.mkdir()
    env = _env(tmp_path) | {"FAKE_SLURM_TASKS_PER_NODE": "2", "STAND_IN_LOG": str(log)}
    env["PATH"] = f"{STAND_IN}:{env['PATH']}"
    run = tmp_path / "run"
    job = subprocess.Popen(
        ["sbatch", str(TRAIN_SH), "--corpus", "c", "--out", str(run)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.time() + 60
    while len(list(log.glob("rank*.json"))) < 4 and time.time() < deadline and job.poll() is None:
        time.sleep(0.05)
    job.send_signal(signal.SIGUSR2)
    output, _ = job.communicate(timeout=60)
    assert job.returncode == 75, output  # EXIT_INTERRUPTED, passed through train.sh and sbatch
    ranks = [json.loads((log / f"rank{r}.json").read_text()) for r in range(4)]
    assert [(r["node"], r["RANK"], r["LOCAL_RANK"], r["WORLD_SIZE"]) for r in ranks] == [
        ("localhost", "0", "0", "4"),
        ("localhost", "1", "1", "4"),
        ("127.0.0.1", "2", "0", "4"),
        ("127.0.0.1", "3", "1", "4"),
    ]
    assert [r["device"] for r in ranks] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert len({(r["MASTER_ADDR"], r["MASTER_PORT"]) for r in ranks}) == 1 and ranks[0]["MASTER_ADDR"] == "localhost"
    assert all(r["argv"][:1] == ["train"] and r["argv"][-1] == "--resume" for r in ranks)
    assert (run / "hostfile").read_text() == "localhost slots=2\n127.0.0.1 slots=2\n"
    assert [(log / f"rank{r}.signal").read_text() for r in range(4)] == ["SIGTERM"] * 4
    assert "scancel --batch: SIGTERM to the batch shell" in output and "SIGTERM received, checkpoint saved" in output


def test_train_sh_without_out_says_what_to_pass(tmp_path):
    done = subprocess.run(["bash", str(TRAIN_SH), "--steps", "3"], env=_env(tmp_path), capture_output=True, text=True)
    assert done.returncode == 2 and "pass --out RUN_DIR" in done.stderr
