"""The smoke sweep on a real single-node SLURM cluster (scripts/slurm_cluster.sh), through
``hydra/launcher=slurm``: its scores equal the basic launcher's, also when jobs are requeued, preempted
(SIGUSR2, submitit's checkpoint-and-requeue) or cancelled while the submitting process is killed.

The cluster is started for the session where this machine can host one (root, Debian, apt-get or the
packages already installed) and stopped afterwards; elsewhere the tests are skipped with the reason.
Set SIMBENCH_REQUIRE_SLURM=1 to turn that skip into a failure (CI does, when it runs as root).

To hold jobs deterministically in the middle of their work, a test takes the cache's file locks of the
models its jobs train before the sweep starts: the jobs start, compose their config, load the data and
then wait on the lock until the test releases it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock
from hydra import compose, initialize_config_dir

from runners.job import model_spec
from runners.sweep import CONF_DIR, slurm_max_array_size
from tests.integration.conftest import (
    ROOT,
    SMOKE,
    assert_same_values,
    count,
    job_logs,
    kill_group,
    run_sweep,
    scores,
    start_sweep,
    wait_for,
)

pytestmark = pytest.mark.slurm

SCRIPT = ROOT / "scripts" / "slurm_cluster.sh"
#: The SLURM launcher with site values from the `cluster:` node, as conf/local/default.yaml would set them.
SLURM = ("hydra/launcher=slurm", "cluster.partition=debug", "cluster.timeout_min=15", "cluster.array_parallelism=4")
#: Two of the smoke grid's four jobs (seeds 0 and 1 with weight noise), for the interruption tests.
SUBGRID = ("perturbation.scale=0.05",)


@pytest.fixture(scope="session")
def slurm_cluster():
    def unavailable(reason: str):
        if os.environ.get("SIMBENCH_REQUIRE_SLURM") == "1":
            pytest.fail(f"SIMBENCH_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)

    if sys.platform != "linux" or shutil.which("bash") is None:
        unavailable("the single-node SLURM cluster needs Linux and bash")
    was_up = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True).returncode == 0
    if not was_up:
        start = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=1200)
        if start.returncode != 0:
            unavailable(f"no SLURM cluster on this machine ({SCRIPT.name} start exited {start.returncode}): "
                        + " ".join(start.stderr.strip().splitlines()[-3:]))
    try:
        yield
    finally:
        if not was_up:  # a cluster someone else started keeps running
            subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, timeout=300)


@pytest.fixture
def cleanup():
    """Sweeps started in the background and their job arrays, ended if a test fails half-way."""
    started: list[tuple[subprocess.Popen, Path]] = []
    yield started
    for proc, results in started:
        if proc.poll() is None:
            kill_group(proc)
        for folder in (results / "logs").glob("smoke/multirun/*/.submitit/*"):
            if folder.name.isdigit():
                subprocess.run(["scancel", folder.name], capture_output=True)


def _scheduler(*command: str) -> None:
    """Run an scontrol/scancel command; SLURM answers "try again later" while it is changing the array."""
    for _ in range(20):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"{' '.join(command)} failed: {done.stderr}")


def _sweep_dir(results: Path) -> Path:
    return wait_for(lambda: next(iter((results / "logs" / "smoke" / "multirun").glob("*")), None), 300,
                    "the sweep's log folder")


def _array_id(sweep_dir: Path) -> str:
    first = wait_for(lambda: next(iter((sweep_dir / ".submitit").glob("*_0")), None), 300, "the job array")
    return first.name.split("_")[0]


def _task_log(sweep_dir: Path, array: str, task: int, stream: str = "out") -> str:
    path = sweep_dir / ".submitit" / f"{array}_{task}" / f"{array}_{task}_0_log.{stream}"
    return path.read_text(errors="replace") if path.exists() else ""


def _task_state(sweep_dir: Path, array: str, task: int, *extra: str) -> str:
    """What a failed wait shows about a task: its SLURM state, the tail of its logs, then ``extra``."""
    tails = [f"--- {stream}:\n" + _task_log(sweep_dir, array, task, stream)[-3000:] for stream in ("out", "err")]
    return "\n".join([f"task {array}_{task}: state {_states(array).get(task, 'not in the queue')}", *tails, *extra])


def _states(array: str) -> dict[int, str]:
    """Array task -> SLURM state (tasks that left the queue are absent)."""
    out = subprocess.run(["squeue", "-h", "-r", "-j", array, "-o", "%i %T"], capture_output=True, text=True).stdout
    return {int(i.split("_")[1]): s for i, s in (line.split() for line in out.splitlines()) if "_" in i}


def _started(sweep_dir: Path, array: str, task: int) -> int:
    """How many times the task's Python process started (submitit logs one line per start)."""
    return count(rf"Starting with JobEnvironment\(job_id={array}_{task},", _task_log(sweep_dir, array, task))


def _in_job(sweep_dir: Path, task: int) -> bool:
    """The task is inside Hydra's job (its output folder exists): past unpickling, signal handlers set."""
    return (sweep_dir / str(task) / ".hydra" / "config.yaml").exists()


def _release_requeued(sweep_dir: Path, array: str, task: int) -> None:
    """SLURM holds a requeued job for two minutes (EligibleTime); make it eligible now."""
    wait_for(lambda: _states(array).get(task) == "PENDING", 120, f"task {task} to be requeued",
             detail=lambda: _task_state(sweep_dir, array, task))
    _scheduler("scontrol", "update", f"jobid={array}_{task}", "StartTime=now")


def _preempt(sweep_dir: Path, array: str, task: int) -> None:
    """Send SIGUSR2 to the task's job step, as SLURM does before a preemption, and wait until submitit's
    handler has caught it (its log says so), checkpointed and requeued the task.

    scancel may report an error although the signal was delivered (the job requeues itself meanwhile),
    so delivery is read from the job's log; while the task still runs without having caught the signal,
    it is sent again (a busy slurmctld or slurmd can drop it), at most five times, 15 s apart.
    """
    answers: list[str] = []
    caught = lambda: "Caught signal SIGUSR2" in _task_log(sweep_dir, array, task)  # noqa: E731
    for _ in range(5):
        done = subprocess.run(["scancel", "--signal=USR2", f"{array}_{task}"], capture_output=True, text=True)
        answers.append(f"scancel --signal=USR2 exited {done.returncode}: {done.stderr.strip()}")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not caught():
            time.sleep(0.2)
        if caught() or _states(array).get(task) != "RUNNING":
            break
    wait_for(caught, 5, f"task {task} to catch SIGUSR2", detail=lambda: _task_state(sweep_dir, array, task, *answers))
    # Wait until its own scontrol requeue went through, before anyone else changes the array (SLURM
    # refuses concurrent changes to an array with "try again later", which would fail submitit's call).
    wait_for(lambda: "Requeued job" in _task_log(sweep_dir, array, task) or _states(array).get(task) == "PENDING",
             60, f"task {task} to requeue itself", detail=lambda: _task_state(sweep_dir, array, task, *answers))


def _model_locks(results: Path) -> list[FileLock]:
    """The cache's file locks of the seed-0 and seed-1 models (what the jobs of SUBGRID train)."""
    locks = []
    for seed in (0, 1):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[*SMOKE, f"seed={seed}"])
        path = results / "cache" / "models" / f"{model_spec(cfg).key}.pt.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        locks.append(FileLock(str(path)))
    return locks


@contextlib.contextmanager
def _jobs_held(results: Path):
    """Hold the jobs of SUBGRID in the middle of their work until the block ends."""
    locks = _model_locks(results)
    for lock in locks:
        lock.acquire()
    try:
        yield
    finally:
        for lock in locks:
            lock.release()


def _start_subgrid(results: Path, log: Path, cleanup: list) -> tuple[subprocess.Popen, Path, str]:
    """Submit SUBGRID to the cluster and wait until tasks 0 and 1 are inside their jobs (held there by
    :func:`_jobs_held`); returns the submitter, the sweep's log folder and the array's job id."""
    proc = start_sweep(results, log, *SLURM, *SUBGRID)
    cleanup.append((proc, results))
    sweep_dir = _sweep_dir(results)
    array = _array_id(sweep_dir)
    wait_for(lambda: _in_job(sweep_dir, 0) and _in_job(sweep_dir, 1), 300, "tasks 0 and 1 to start their jobs")
    return proc, sweep_dir, array


def _subgrid_rows(baseline):
    """The baseline rows of SUBGRID's two jobs (the perturbation pairs)."""
    return baseline.scores[baseline.scores["scale_b"] == 0.05]


def test_slurm_sweep_equals_basic_launcher(slurm_cluster, baseline, tmp_path):
    results = tmp_path / "results"
    run_sweep(results, *SLURM)
    assert_same_values(scores(results), baseline.scores)

    sweep_dir = _sweep_dir(results)
    array = _array_id(sweep_dir)
    # One job array; the venv's interpreter runs every task (submitit writes sys.executable into srun).
    script = (sweep_dir / ".submitit" / array / f"{array}_submission.sh").read_text()
    assert "#SBATCH --array=0-3%4" in script and "#SBATCH --partition=debug" in script
    assert "#SBATCH --cpus-per-task=1" in script and "#SBATCH --time=15" in script
    assert "export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1" in script
    assert f"{shlex.quote(sys.executable)} -u -m submitit.core._submit" in script
    for task in range(4):
        assert _started(sweep_dir, array, task) == 1, _task_log(sweep_dir, array, task)
        assert "Job completed successfully" in _task_log(sweep_dir, array, task)
    # The four tasks run at once and pairs of them need the same model: each model is trained once.
    logs = job_logs(results)
    for seed in range(2):
        assert count(rf"trained mlp seed={seed}:", logs) == 1, f"model seed={seed} trained more than once:\n{logs}"
    assert len(list((results / "cache").glob("models/*.pt"))) == baseline.n_models
    # submitit refuses arrays whose pickles add up to more than 1 GB (max_pickle_size_gb, which launcher
    # 1.2.0 cannot raise): a job's pickle (launcher, Hydra state, task function) must stay small.
    pickles = list((sweep_dir / ".submitit").glob("*/*_submitted.pkl"))
    assert len(pickles) == 4 and max(p.stat().st_size for p in pickles) < 1_000_000


def test_the_clusters_array_limit_is_read(slurm_cluster):
    """Planning reads MaxArraySize from scontrol; the test cluster's slurm.conf leaves it at SLURM's
    documented default, 1001."""
    assert slurm_max_array_size() == 1001


def test_requeued_and_preempted_jobs_resume(slurm_cluster, baseline, tmp_path, cleanup):
    """Task 0 is requeued by the scheduler (scontrol requeue: killed, restarted from scratch); task 1 is
    preempted (SIGUSR2: submitit checkpoints the launcher's call and requeues itself). Both restart, redo
    their (idempotent) job, and the sweep completes by itself with exactly the uninterrupted rows."""
    results = tmp_path / "results"
    with _jobs_held(results):
        proc, sweep_dir, array = _start_subgrid(results, tmp_path / "sweep.log", cleanup)
        time.sleep(1.0)  # both now wait on a model lock, in the middle of their job

        _preempt(sweep_dir, array, 1)
        _scheduler("scontrol", "requeue", f"{array}_0")
        for task in (0, 1):
            _release_requeued(sweep_dir, array, task)
    assert proc.wait(timeout=900) == 0, (tmp_path / "sweep.log").read_text()[-4000:]
    assert_same_values(scores(results), _subgrid_rows(baseline))

    requeued, preempted = _task_log(sweep_dir, array, 0), _task_log(sweep_dir, array, 1)
    assert _started(sweep_dir, array, 0) == 2 and "DUE TO JOB REQUEUE" in _task_log(sweep_dir, array, 0, "err")
    assert _started(sweep_dir, array, 1) == 2
    # submitit's own "Requeued job" line is not asserted: its scontrol requeue makes SLURM end the step,
    # which can cut the step's output before that line is forwarded. The second start above is the proof.
    assert "Caught signal SIGUSR2" in preempted and "Calling checkpoint method" in preempted
    for log in (requeued, preempted):
        assert log.rstrip().endswith("Exiting after successful completion"), log[-2000:]


def test_cancelled_job_and_killed_submitter_resume_by_rerun(slurm_cluster, baseline, tmp_path, cleanup):
    """Task 1 is cancelled for good (scancel) and the submitting process is SIGKILLed: task 0 still
    finishes and writes its shard on its own; rerunning the same command computes only the cancelled
    job's rows and ends with the uninterrupted scores."""
    results = tmp_path / "results"
    with _jobs_held(results):
        proc, sweep_dir, array = _start_subgrid(results, tmp_path / "first.log", cleanup)
        _scheduler("scancel", f"{array}_1")
        kill_group(proc)  # the user's shell is gone
        killed_at = time.time()
        # submitit bypasses the SIGTERM of scancel; SLURM sends SIGKILL after KillWait. Keep task 1 held
        # until it has left the queue, or it may finish its job within KillWait once the locks go.
        wait_for(lambda: 1 not in _states(array), 120, "the cancelled task 1 to leave the queue")
    wait_for(lambda: not _states(array), 600, "task 0 to finish without its submitter")
    shards = sorted((results / "smoke" / "shards").glob("*.parquet"))
    assert len(shards) == 1 and shards[0].stat().st_mtime > killed_at, "task 0 finished after the submitter died"
    assert "Job completed successfully" not in _task_log(sweep_dir, array, 1)

    rerun = run_sweep(results, *SLURM, *SUBGRID)
    expected = _subgrid_rows(baseline)
    assert_same_values(scores(results), expected)
    cancelled = int((expected["seed_b"] == 1).sum())
    assert f"{cancelled} rows computed in this run, {len(expected) - cancelled} reused" in rerun.stdout
