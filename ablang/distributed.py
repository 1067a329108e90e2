"""distributed: a study's variant chunks and a search's candidates on a Ray cluster.

The driver (``ablang run --ray``) resolves, loads and runs the baseline itself, exactly as a
local run does; only the variants' own steps leave it::

    driver: Session, baseline ──ray.put──▶ object store ──▶ VariantWorker 1..K (Ray actors)
            batches(todo)  ──one task per chunk──────────▶ run_batch(chunk, baseline, mode)
            journal.append ◀──── Samples, as each task completes ─────┘

- Each ``VariantWorker`` loads the model once (``Session.from_plan``: the same adapter, setup,
  noise and ``ProgramCache`` as the driver's) from a path every node can read, and keeps its
  compiled programs for every chunk it runs. It runs the driver's torch thread count, so a
  chunk's images are bit for bit the local executor's.
- The chunks are the local executor's (``execute.batches``: same grouping, same start step), so
  nothing about a variant's result depends on where it ran.
- One writer: workers return ``Samples``; the driver alone writes the journal, as results arrive,
  so ``--resume`` works as it does locally, also after the driver itself was killed.
- A worker that dies is restarted and its task run again (``max_restarts``,
  ``max_task_retries``); ``ABLANG_RAY_DIE_ONCE=FILE`` makes one worker exit in the middle of its
  first task, once (the file marks it done), so tests can check that.
- Ray is optional: ``require_ray`` says how to install it.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ablang.compile import Mode
from ablang.errors import AblangError
from ablang.execute import Executor, RunSetup, Samples, Trajectory
from ablang.plan import Plan, Variant
from ablang.session import Session

INSTALL = "pip install 'ablang[ray]'"
DIE_ONCE = "ABLANG_RAY_DIE_ONCE"  # fault injection for tests: a worker exits once, mid-task
RETRIES = 3  # a dead worker is restarted, and its task run again, this many times
IN_FLIGHT = 2  # tasks queued per worker, so that it never waits for the driver between chunks


def require_ray() -> Any:
    """The ``ray`` module; an ``AblangError`` (exit 2) saying how to install it otherwise."""
    try:
        import ray
    except ImportError:
        raise AblangError(
            f"running on a Ray cluster needs Ray, which is not installed: {INSTALL}",
            code="ray-missing",
            hint="or run without --ray (and without the study's `ray` setting)",
        ) from None
    return ray


def connect(address: str) -> tuple[bool, float]:
    """Connect to the Ray cluster at ``address`` (``"HOST:PORT"``, ``"ray://HOST:PORT"``,
    ``"auto"``: the one ``ray start`` runs on this machine), or start a local one (``"local"``)
    on this machine's CPUs. Returns (whether this call started the connection, its seconds); a
    driver already connected (a notebook, the tests) keeps its connection."""
    ray = require_ray()
    if ray.is_initialized():
        return False, 0.0
    t0 = time.perf_counter()
    kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
    if address == "local":
        kwargs["num_cpus"] = os.cpu_count() or 1
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise AblangError(
            f"cannot connect to the Ray cluster at {address}: {e}",
            code="ray-connect",
            hint="start one with `ray start --head`, or run with `--ray` alone for a local one",
        ) from None
    return True, time.perf_counter() - t0


@dataclass(frozen=True)
class ClusterPlan:
    """How many workers, and what each one holds: one GPU each where the cluster has GPUs (and
    the study may use them), one CPU each otherwise."""

    workers: int
    gpus: int  # per worker: 0 or 1
    device: str  # the workers' torch device: "cuda" or "cpu"

    def describe(self) -> str:
        each = "1 GPU" if self.gpus else "1 CPU"
        return f"{self.workers} Ray worker{'s' * (self.workers != 1)} ({each} each)"


def plan_cluster(resources: dict[str, float], device: str, workers: int = 0) -> ClusterPlan:
    """Workers for a cluster with ``resources`` (``ray.cluster_resources()``) and the study's
    ``device`` setting; ``workers`` > 0 overrides their number (``--ray-workers N``)."""
    gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
    if device == "cuda" and not gpus:
        raise AblangError(
            "the study asks for device cuda, but the Ray cluster has no GPUs",
            code="device",
            hint="run on a cluster with GPUs, or set `device auto` (or cpu)",
        )
    use_gpu = gpus > 0 and device != "cpu"
    n = workers or (gpus if use_gpu else cpus)
    return ClusterPlan(n, 1 if use_gpu else 0, "cuda" if use_gpu else "cpu")


def worker_plan(plan: Plan) -> Plan:
    """``plan`` with its model's files as absolute paths (a worker's working directory is not
    the driver's); a path that is not a file here (a Hub model id) is left as it is."""
    spec = plan.model

    def absolute(value: str | None) -> str | None:
        return str(Path(value).resolve()) if value and Path(value).exists() else value

    return replace(
        plan, model=replace(spec, path=absolute(spec.path), config=absolute(spec.config))
    )


class VariantWorker:
    """One Ray actor: the plan's model loaded once, its programs kept, running chunks."""

    def __init__(self, plan: Plan, device: str, threads: int, die_once: str = "") -> None:
        t0 = time.perf_counter()
        torch.set_num_threads(threads)  # the driver's: the same kernels, the same bits
        self.session = Session.from_plan(plan, device)
        self.executors = {self.session.setup: self.session.executor}  # noise drawn now
        self.die_once = die_once
        self.warmup = time.perf_counter() - t0

    def ready(self) -> tuple[int, float]:
        """(process id, seconds it took to load the model and set up)."""
        return os.getpid(), self.warmup

    def run(
        self, variants: list[Variant], baseline: Trajectory, mode: Mode, setup: RunSetup
    ) -> list[Samples]:
        """``variants`` as one chunk from ``baseline``'s states, with ``setup``'s prompts, seeds
        and noise (a search may measure on other seeds than the study's)."""
        if self.die_once and not os.path.exists(self.die_once):
            Path(self.die_once).write_text(str(os.getpid()))
            os._exit(1)  # a worker lost mid-task: Ray restarts it and runs the task again
        if setup not in self.executors:
            s = self.session
            self.executors[setup] = Executor(s.model, s.diffusion, setup, s.device, s.programs)
        return self.executors[setup].run_batch(variants, baseline, mode)


class RayRunner:
    """K ``VariantWorker``s on a connected cluster; ``run_groups`` runs chunks on them."""

    def __init__(
        self, plan: Plan, cluster: ClusterPlan, started: bool = False, connect_seconds: float = 0.0
    ) -> None:
        self.ray = ray = require_ray()
        self.cluster, self.started, self.connect_seconds = cluster, started, connect_seconds
        actor = ray.remote(VariantWorker).options(
            num_cpus=0 if cluster.gpus else 1,
            num_gpus=cluster.gpus,
            max_restarts=RETRIES,
            max_task_retries=RETRIES,
        )
        shipped = worker_plan(plan)
        threads, die_once = torch.get_num_threads(), os.environ.get(DIE_ONCE, "")
        self.actors = [
            actor.remote(shipped, cluster.device, threads, die_once) for _ in range(cluster.workers)
        ]
        self._baseline: tuple[int, Any] | None = None

    @property
    def workers(self) -> int:
        return len(self.actors)

    def warm_up(self) -> list[float]:
        """Wait until every worker has loaded the model; their load times in seconds."""
        return [w for _, w in self._get([a.ready.remote() for a in self.actors])]

    def _get(self, refs: Any) -> Any:
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayActorError as e:
            raise AblangError(
                f"a Ray worker failed {RETRIES + 1} times: {str(e).strip().splitlines()[0]}",
                code="ray-worker",
                hint="the model must be at a path every node can read (docs/scaling.md); the "
                "finished variants are in the journal, --resume continues",
            ) from None

    def _baseline_ref(self, baseline: Trajectory) -> Any:
        """The baseline's states in the object store, put there once per trajectory."""
        if self._baseline is None or self._baseline[0] != id(baseline):
            self._baseline = (id(baseline), self.ray.put(baseline))
        return self._baseline[1]

    def run_groups(
        self, groups: list[list[Variant]], baseline: Trajectory, mode: Mode, setup: RunSetup
    ) -> Iterator[tuple[list[Variant], list[Samples]]]:
        """Each chunk of ``groups`` on a worker, all of them from ``baseline``'s states (which
        ``setup`` sampled); yields
        ``(chunk, its samples)`` as tasks complete (not in order). Every worker has at most
        ``IN_FLIGHT`` tasks queued, so a slow one never holds chunks another could run."""
        ray = self.ray
        base = self._baseline_ref(baseline)
        queue = deque(groups)
        load = {i: 0 for i in range(len(self.actors))}
        pending: dict[Any, tuple[list[Variant], int]] = {}
        while queue or pending:
            for i in sorted(load, key=load.__getitem__):
                while queue and load[i] < IN_FLIGHT:
                    group = queue.popleft()
                    pending[self.actors[i].run.remote(group, base, mode, setup)] = (group, i)
                    load[i] += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                group, i = pending.pop(ref)
                load[i] -= 1
                yield group, self._get(ref)

    def close(self) -> None:
        """Stop the workers (and their queued tasks); disconnect if this run connected."""
        for a in self.actors:
            self.ray.kill(a, no_restart=True)
        self.actors = []
        self._baseline = None
        if self.started:
            self.ray.shutdown()


def open_runner(plan: Plan, address: str, device: str, workers: int = 0) -> RayRunner:
    """Connect to ``address`` and start the workers (they load the model while the driver runs
    the baseline)."""
    started, seconds = connect(address)
    ray = require_ray()
    cluster = plan_cluster(ray.cluster_resources(), device, workers)
    return RayRunner(plan, cluster, started, seconds)
