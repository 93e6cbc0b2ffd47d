"""A pool worker (runners.sweep._pool_job) moves its long-lived objects out of the garbage collector's
sight after its first job, so that loky's gc.collect() after every task no longer walks every imported
object; objects created later are still collected. Run in a subprocess: freezing is process-wide."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import gc, sys, time, weakref
    from pathlib import Path
    import runners.job
    import runners.sweep as sweep

    calls = []
    runners.job.run_job = lambda cfg: calls.append(cfg)  # the job itself is not what is tested here
    freezes = []
    real_freeze = gc.freeze
    gc.freeze = lambda: (freezes.append(1), real_freeze())
    log = Path(sys.argv[1])

    assert gc.get_freeze_count() == 0
    sweep._pool_job("first", log / "0" / "simbench.log")
    frozen = gc.get_freeze_count()
    assert frozen > 1000, frozen  # the imported modules' objects (torch, pandas, Hydra, ...)
    sweep._pool_job("second", log / "1" / "simbench.log")
    assert calls == ["first", "second"] and len(freezes) == 1  # once per process

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # a reference cycle created after the freeze
    alive = weakref.ref(a)
    del a, b
    tic = time.perf_counter()
    gc.collect()
    assert alive() is None  # still collected
    print(f"ok {frozen} {time.perf_counter() - tic:.4f}")
    """
)


def test_pool_worker_freezes_once_after_its_first_job_and_still_collects_new_cycles(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[0] == "ok", proc.stdout
    # unfrozen at exit: extension types (triton's, through nanobind) report no leaked instances
    assert "leaked" not in proc.stderr, proc.stderr[-3000:]


STOP_SCRIPT = textwrap.dedent(
    """
    import os, time
    from joblib import Parallel, delayed
    import runners.sweep as sweep

    sweep.stop_pool()  # no pool yet: nothing to stop, and none is started
    from joblib.externals.loky import reusable_executor
    assert getattr(reusable_executor, "_executor", None) is None
    pids = set(Parallel(n_jobs=2, backend="loky")(delayed(os.getpid)() for _ in range(4)))
    assert pids and os.getpid() not in pids
    sweep.stop_pool()

    def running():  # the workers still running (an ended, unreaped one is a zombie: state Z)
        return [p for p in pids if os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z"]

    deadline = time.monotonic() + 30
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    print("ok" if not running() else f"alive {running()}")
    """
)


def test_stop_pool_ends_the_loky_workers_and_starts_none_where_none_runs():
    proc = subprocess.run([sys.executable, "-c", STOP_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1:] == ["ok"], proc.stdout
