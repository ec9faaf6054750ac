"""Where a run's (category, detector) units execute: in this process, or on Dask.

An :class:`Executor` maps a picklable top-level function over tasks and yields each
task's result **in the order of the tasks** (never in completion order), so that the
client saves units and assembles tables in the same order whatever the number of
workers. Two implementations:

* :class:`InProcessExecutor` (the default): the tasks run one after the other in this
  process, exactly as before executors existed; an exception propagates at once.
* :class:`DaskExecutor`: the tasks run on ``dask.distributed`` workers, either a
  :class:`distributed.LocalCluster` of ``workers`` worker **processes** (torch and BLAS
  are not safe to share between threads of one process) started and closed by the
  executor, or an existing cluster reached at ``scheduler`` (``tcp://host:8786``).

Failure handling (Dask):

* A worker process that dies during a task (killed, out of memory, segfault) makes the
  scheduler run the task again on another worker, up to ``retries`` times (Dask's
  ``allowed-failures`` for a local cluster, plus ``retries`` for the submission).
* A task that **raises** is not retried (the same inputs would raise again): the
  exception is caught on the worker and reported as a :class:`UnitFailure` naming the
  task, with the worker's traceback; the other tasks go on and their results are kept.

Threads: each Dask worker runs one task at a time, and torch / OpenMP / MKL / OpenBLAS in
each worker process use ``threads_per_worker`` threads (environment variables set before
the worker process starts for a local cluster, a worker plugin and ``torch`` calls
otherwise), so ``N`` workers use about ``N * threads_per_worker`` cores.

:func:`make_executor` checks the options and builds the right executor.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import numbers
import os
import pickle
import resource
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from xeval.errors import InputError, XevalError

__all__ = [
    "DaskExecutor",
    "Executor",
    "InProcessExecutor",
    "UnitFailure",
    "UnitsFailedError",
    "check_executor_options",
    "make_executor",
]

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class UnitFailure(XevalError):
    """One task (unit) that failed: it raised, or its worker died more often than allowed.

    Attributes: ``key`` (the unit's name, e.g. ``"brick/patch_features"``),
    ``error_type`` (the exception's class name), ``message``, ``worker_traceback``
    (the traceback on the worker, as text) and ``error`` (the original exception when it
    could be sent back, else ``None``).
    """

    def __init__(
        self,
        key: str,
        *,
        error_type: str,
        message: str,
        worker_traceback: str = "",
        error: BaseException | None = None,
    ) -> None:
        super().__init__(f"unit {key} failed: {error_type}: {message}")
        self.key = key
        self.error_type = error_type
        self.message = message
        self.worker_traceback = worker_traceback
        self.error = error


class UnitsFailedError(XevalError):
    """Raised at the end of a run when some units failed; the finished units were saved
    (the next run resumes them). ``failures`` lists the :class:`UnitFailure` s."""

    def __init__(self, failures: Sequence[UnitFailure], *, saved: int = 0) -> None:
        self.failures = list(failures)
        lines = [f"  - {f.key}: {f.error_type}: {f.message}" for f in self.failures]
        tb = next((f.worker_traceback for f in self.failures if f.worker_traceback), "")
        tail = f"\nworker traceback of the first failure:\n{tb.rstrip()}" if tb else ""
        super().__init__(
            f"{len(self.failures)} unit(s) failed; the {saved} finished unit(s) were saved "
            "and are reused when the run is started again:\n" + "\n".join(lines) + tail
        )


# --------------------------------------------------------------------- worker side
@dataclass
class _Envelope:
    """What a task sends back: its value or a captured failure, and worker-side stats."""

    ok: bool
    value: Any
    stats: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)  # (module, class name, message)


@dataclass
class _Captured:
    error_type: str
    message: str
    worker_traceback: str
    error: bytes | None  # the pickled exception, when it pickles


def _limit_threads(threads: int | None) -> None:
    """Use ``threads`` torch / BLAS threads in this process (no-op for ``None``)."""
    if threads is None:
        return
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency
            return
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _peak_rss_mb() -> float:
    """Peak resident memory of this process since it started, MiB: ``VmHWM`` of
    ``/proc/self/status`` where there is one (``ru_maxrss`` would include the parent's
    peak: Linux keeps it across fork and exec), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "in-process"


def _call(fn: Callable, task: Any, threads: int | None) -> _Envelope:
    """Run ``fn(task)`` on a worker: limit threads, time it, capture an exception."""
    _limit_threads(threads)
    start_wall, t0 = time.time(), time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value, ok = fn(task), True
    except Exception as exc:  # reported to the client as a UnitFailure, not retried
        try:
            blob = pickle.dumps(exc)
            pickle.loads(blob)  # some exceptions pickle but do not unpickle
        except Exception:  # noqa: BLE001 - any failure means "send the text only"
            blob = None
        value = _Captured(type(exc).__name__, str(exc), traceback.format_exc(), blob)
        ok = False
    stats = {
        "worker_s": time.perf_counter() - t0,
        "start_wall": start_wall,
        "end_wall": time.time(),
        "worker": _worker_address(),
        "pid": os.getpid(),
        "peak_rss_mb": _peak_rss_mb(),
    }
    seen = [
        (type(w.message).__module__, type(w.message).__qualname__, str(w.message)) for w in caught
    ]
    return _Envelope(ok, value, stats, list(dict.fromkeys(seen)))


def _warn_on_client(relayed: list) -> None:
    """Show on the client the warnings a unit raised on its worker (xeval's own and
    Python's built-in categories keep their class; others become a UserWarning naming
    theirs)."""
    import builtins

    import xeval.errors

    for module, name, message in relayed:
        source = {"xeval.errors": xeval.errors, "builtins": builtins}.get(module)
        category = getattr(source, name, None) if source is not None else None
        if not (isinstance(category, type) and issubclass(category, Warning)):
            category, message = UserWarning, f"{module}.{name}: {message}"
        warnings.warn(message, category, stacklevel=3)


def _failure(key: str, captured: _Captured) -> UnitFailure:
    error = None
    if captured.error is not None:
        try:
            error = pickle.loads(captured.error)  # noqa: S301 - from our own worker
        except Exception:  # noqa: BLE001
            error = None
    return UnitFailure(
        key,
        error_type=captured.error_type,
        message=captured.message,
        worker_traceback=captured.worker_traceback,
        error=error,
    )


# ------------------------------------------------------------------------ executors
class Executor:
    """Maps a function over units; see the module docstring.

    Subclasses implement :meth:`map_units` and :meth:`describe`; an executor is a context
    manager (``with make_executor(...) as ex:``) that releases what it started on exit.
    ``unit_stats`` lists, per finished unit, the worker-side timings (``worker_s``), the
    client-side wait (``client_s``), the worker and its peak memory.
    """

    kind = "abstract"

    def __init__(self) -> None:
        self.unit_stats: dict[str, dict] = {}

    def map_units(
        self, fn: Callable[[Any], Any], tasks: Iterable[Any], *, keys: Sequence[str]
    ) -> Iterator[tuple[str, Any]]:
        """Yield ``(key, result)`` for each task, in the order of ``tasks``; ``result``
        is ``fn(task)`` or a :class:`UnitFailure` (Dask) naming the key."""
        raise NotImplementedError

    def describe(self) -> dict:
        """What the manifest records about the executor."""
        raise NotImplementedError

    def overhead(self) -> dict:
        """Per-unit timings and their summary: the time the client waited for a unit
        beyond the unit's own time on the worker (scheduling, transfer, queueing behind
        other units is excluded: see :meth:`DaskExecutor.overhead`)."""
        return {"units": dict(self.unit_stats)}

    def close(self) -> None:
        """Release what the executor started (nothing for the in-process executor)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InProcessExecutor(Executor):
    """Runs the units one after the other in this process (the default). An exception of
    a unit propagates at once, with its own traceback (nothing is caught)."""

    kind = "in-process"

    def map_units(self, fn, tasks, *, keys):
        tasks = list(tasks)
        _check_keys(keys, tasks)
        for key, task in zip(keys, tasks, strict=True):
            t0 = time.perf_counter()
            value = fn(task)
            dt = time.perf_counter() - t0
            self.unit_stats[key] = {"worker_s": dt, "client_s": dt, "worker": "in-process"}
            yield key, value

    def describe(self) -> dict:
        return {"kind": self.kind, "workers": 1, "threads_per_worker": None, "scheduler": None}


def _versions() -> dict:
    out = {}
    for pkg in ("dask", "distributed"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:  # pragma: no cover - dependencies
            out[pkg] = None
    return out


def _thread_plugin(threads: int):
    """A worker plugin that limits torch / BLAS threads in every worker of a cluster we
    did not start (a local cluster gets the environment before its processes start)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class ThreadLimits(WorkerPlugin):
        name = "xeval-thread-limits"

        def __init__(self, n: int) -> None:
            self.n = n

        def setup(self, worker) -> None:
            _limit_threads(self.n)

    return ThreadLimits(threads)


class DaskExecutor(Executor):
    """Runs the units as ``dask.distributed`` tasks (see the module docstring).

    Parameters
    ----------
    workers:
        Start a :class:`distributed.LocalCluster` of this many worker processes (one task
        at a time each). Exclusive with ``scheduler``.
    scheduler:
        Address of a running scheduler (``tcp://host:8786``); its workers need xeval
        installed and the dataset's files at the same paths.
    threads_per_worker:
        torch / OpenMP / MKL / OpenBLAS threads in each worker process.
    retries:
        How many times a unit is run again when its worker dies (or the task is lost);
        a unit that raises is never retried. (For a cluster started elsewhere, its
        scheduler's ``distributed.scheduler.allowed-failures`` decides how often a
        worker may die under one task.)
    connect_timeout:
        Seconds to wait for ``scheduler`` to answer.
    """

    kind = "dask"

    def __init__(
        self,
        *,
        workers: int | None = None,
        scheduler: str | None = None,
        threads_per_worker: int = 1,
        retries: int = 2,
        connect_timeout: float = 30.0,
    ) -> None:
        super().__init__()
        if workers is None and scheduler is None:
            raise InputError(
                "DaskExecutor needs workers (a number of processes) or scheduler (an "
                "address such as 'tcp://host:8786'), got neither"
            )
        check_executor_options(
            workers=workers, scheduler=scheduler, threads_per_worker=threads_per_worker
        )
        _check_int(retries, "retries", minimum=0)
        import dask
        from distributed import Client, LocalCluster

        self.workers, self.scheduler = workers, scheduler
        self.threads_per_worker, self.retries = threads_per_worker, retries
        self.cluster = None
        t0 = time.perf_counter()
        if workers is not None:
            env = {var: str(threads_per_worker) for var in _THREAD_VARS}
            with dask.config.set({"distributed.scheduler.allowed-failures": retries}):
                self.cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    env=env,
                    dashboard_address=":0",  # any free port (several runs at once)
                )
            try:
                self.client = Client(self.cluster)
            except BaseException:
                self.cluster.close()
                raise
        else:
            _check_address(scheduler)
            try:
                self.client = Client(scheduler, timeout=connect_timeout)
            except (OSError, TimeoutError) as exc:
                raise InputError(
                    f"scheduler {scheduler!r} cannot be reached ({type(exc).__name__}: {exc}); "
                    "expected the address of a running `dask scheduler`, e.g. tcp://host:8786"
                ) from exc
            try:
                self.client.register_plugin(_thread_plugin(threads_per_worker))
            except BaseException:
                self.client.close()
                raise
        self.startup_s = time.perf_counter() - t0

    @property
    def address(self) -> str:
        return self.client.scheduler.address

    def map_units(self, fn, tasks, *, keys):
        tasks = list(tasks)
        _check_keys(keys, tasks)
        return self._iterate(fn, tasks, list(keys))

    def _iterate(self, fn, tasks, keys):
        # import the function's module (xeval, torch...) on every worker first: the
        # first unit of each worker does not pay it, and it is timed on its own
        t0 = time.perf_counter()
        try:
            self.client.run(importlib.import_module, fn.__module__)
        except Exception:  # noqa: BLE001 - the tasks themselves will report the error
            pass
        self.warmup_s = time.perf_counter() - t0
        submitted = time.time()
        futures = [
            self.client.submit(
                _call, fn, task, self.threads_per_worker, pure=False, retries=self.retries
            )
            for task in tasks
        ]
        arrived: dict[int, float] = {}
        for i, f in enumerate(futures):
            f.add_done_callback(lambda _f, i=i: arrived.setdefault(i, time.time()))
        try:
            for i, (key, fut) in enumerate(zip(keys, futures, strict=True)):
                try:
                    env = fut.result()
                except Exception as exc:  # the worker died too often, the task was lost...
                    yield (
                        key,
                        UnitFailure(
                            key,
                            error_type=type(exc).__name__,
                            message=str(exc) or "the task was lost (its worker died or left)",
                            error=exc,
                        ),
                    )
                    continue
                finally:
                    fut.release()
                stats = dict(env.stats)
                stats["submitted_wall"] = submitted
                stats["arrived_wall"] = arrived.get(i, time.time())
                self.unit_stats[key] = stats
                _warn_on_client(env.warnings)
                yield key, (env.value if env.ok else _failure(key, env.value))
        finally:
            for f in futures:
                if not f.done():
                    f.cancel()

    def overhead(self) -> dict:
        """Per unit: ``worker_s`` (the unit's time on its worker), ``return_s`` (from the
        worker's end to the client seeing the result), ``start_s`` (from the moment the
        unit could start -- submission, or the end of the previous unit on the same
        worker -- to its start on the worker), ``overhead_s = start_s + return_s``, and
        their means. Assumes the client's and workers' clocks agree (true for a local
        cluster; on several machines clock skew enters ``start_s`` and ``return_s``)."""
        units: dict[str, dict] = {}
        last_end: dict[str, float] = {}
        order = sorted(self.unit_stats.items(), key=lambda kv: kv[1]["start_wall"])
        for key, s in order:
            ready = max(s["submitted_wall"], last_end.get(s["worker"], s["submitted_wall"]))
            start = max(0.0, s["start_wall"] - ready)
            ret = max(0.0, s["arrived_wall"] - s["end_wall"])
            last_end[s["worker"]] = s["end_wall"]
            units[key] = {
                "worker": s["worker"],
                "worker_s": s["worker_s"],
                "start_s": start,
                "return_s": ret,
                "overhead_s": start + ret,
                "peak_rss_mb": s["peak_rss_mb"],
            }
        n = len(units)
        mean = (lambda k: sum(u[k] for u in units.values()) / n) if n else (lambda k: None)
        peaks: dict[str, float] = {}
        for u in units.values():
            peaks[u["worker"]] = max(peaks.get(u["worker"], 0.0), u["peak_rss_mb"])
        return {
            "units": {k: units[k] for k in self.unit_stats if k in units},
            "mean_worker_s": mean("worker_s"),
            "mean_overhead_s": mean("overhead_s"),
            "peak_rss_mb_per_worker": peaks,
            "startup_s": self.startup_s,
            "warmup_s": getattr(self, "warmup_s", None),
        }

    def describe(self) -> dict:
        n = self.workers
        if n is None:
            try:
                n = len(self.client.scheduler_info().get("workers", {}))
            except Exception:  # noqa: BLE001 - the description must not fail a run
                n = None
        return {
            "kind": self.kind,
            "cluster": "LocalCluster (processes)" if self.cluster is not None else "external",
            "workers": n,
            "threads_per_worker": self.threads_per_worker,
            "scheduler": self.scheduler if self.scheduler is not None else self.address,
            "retries": self.retries,
            "versions": _versions(),
        }

    def close(self) -> None:
        client, cluster = getattr(self, "client", None), self.cluster
        self.cluster = None
        try:
            if client is not None:
                client.close()
        finally:
            if cluster is not None:
                cluster.close()


# ----------------------------------------------------------------------- validation
def _check_int(value, name: str, *, minimum: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_executor_options(
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    threads_per_worker: int | None = None,
    threads_need_dask: bool = True,
) -> None:
    """Check executor options (:class:`~xeval.errors.InputError` naming the option, the
    value and what was expected): ``workers`` an integer >= 1, ``scheduler`` an address
    string, not both; ``threads_per_worker`` an integer >= 1, and (unless
    ``threads_need_dask`` is false) only together with ``workers`` or ``scheduler``."""
    if workers is not None:
        _check_int(workers, "workers", minimum=1)
    if scheduler is not None:
        if not isinstance(scheduler, str) or not scheduler or scheduler != scheduler.strip():
            raise InputError(
                f"scheduler must be the address of a Dask scheduler such as "
                f"'tcp://host:8786', got {scheduler!r}"
            )
    if workers is not None and scheduler is not None:
        raise InputError(
            f"give workers (start a local cluster; got {workers!r}) or scheduler (use an "
            f"existing cluster; got {scheduler!r}), not both"
        )
    if threads_per_worker is not None:
        _check_int(threads_per_worker, "threads_per_worker", minimum=1)
        if threads_need_dask and workers is None and scheduler is None:
            raise InputError(
                f"threads_per_worker={threads_per_worker!r} applies to Dask workers: give "
                "workers or scheduler too (an in-process run keeps the detectors' own "
                "num_threads)"
            )


def _check_address(address: str) -> None:
    """A scheduler address Dask can parse (known scheme, a port where one is needed),
    checked before connecting: else an :class:`~xeval.errors.InputError` naming it."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
        if scheme in ("tcp", "tls", "ws", "wss"):
            parse_host_port(location)
    except ValueError as exc:
        raise InputError(
            f"scheduler {address!r} is not a Dask scheduler address ({exc}); "
            "expected e.g. tcp://host:8786"
        ) from exc


def _check_keys(keys: Sequence[str], tasks: list) -> None:
    keys = list(keys)
    if len(keys) != len(tasks):
        raise InputError(f"keys: {len(keys)} keys for {len(tasks)} tasks (expected one each)")
    if len(set(keys)) != len(keys):
        raise InputError(f"keys must be distinct, got {keys!r}")


def make_executor(
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    threads_per_worker: int | None = None,
) -> Executor:
    """The executor for these options: :class:`InProcessExecutor` when neither ``workers``
    nor ``scheduler`` is given, else a :class:`DaskExecutor` (``threads_per_worker``
    defaults to 1). Errors (:class:`~xeval.errors.InputError`) name the option and value:
    ``workers`` must be an integer >= 1, ``scheduler`` an address string,
    ``threads_per_worker`` an integer >= 1 and only with ``workers`` or ``scheduler``; and
    ``workers`` and ``scheduler`` exclude each other."""
    check_executor_options(
        workers=workers, scheduler=scheduler, threads_per_worker=threads_per_worker
    )
    if workers is None and scheduler is None:
        return InProcessExecutor()
    return DaskExecutor(
        workers=workers,
        scheduler=scheduler,
        threads_per_worker=1 if threads_per_worker is None else threads_per_worker,
    )
