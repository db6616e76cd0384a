"""Per-stage measurements: wall and CPU time, peak RSS of the process tree, JVM heap peak,
and what Spark's own status store says about the stages a bench stage ran.

The process tree is this Python driver, the JVM it launched and Spark's Python workers
(Linux /proc, sampled every 0.2 s). Summed RSS counts pages shared by forked workers more
than once, so it is an upper bound. JVM heap peaks come from the memory-pool MXBeans
(reset at each stage start); Spark's executor peak metrics (status store) are cumulative
since start and only refreshed on heartbeats, so they are reported as seen, not per stage.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
GIB = 1024**3


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc/<pid>/task/<tid>/children."""
    seen, todo = [], [root]
    while todo:
        pid = todo.pop()
        seen.append(pid)
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                text = (task / "children").read_text().split()
                todo.extend(int(c) for c in text)
        except OSError:
            continue
    return seen


def _rss_cpu(pid: int) -> tuple[int, float]:
    try:
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = sum(int(f) for f in fields[11:15]) / TICKS  # utime stime cutime cstime
        return rss, cpu
    except (OSError, ValueError, IndexError):
        return 0, 0.0


def tree_usage(root: int | None = None) -> tuple[int, float]:
    """(summed RSS bytes, summed CPU seconds) of the process tree under ``root``."""
    rss, cpu = 0, 0.0
    for pid in tree_pids(root or os.getpid()):
        r, c = _rss_cpu(pid)
        rss, cpu = rss + r, cpu + c
    return rss, cpu


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@dataclass
class StageRecord:
    """What one bench stage cost."""

    name: str
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_gib: float = 0.0
    jvm_heap_peak_gib: float = 0.0
    load_avg_before: list[float] = field(default_factory=list)
    spark: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 2),
            "peak_rss_gib": round(self.peak_rss_gib, 3),
            "jvm_heap_peak_gib": round(self.jvm_heap_peak_gib, 3),
            "load_avg_before": self.load_avg_before,
            "spark": self.spark,
        }


class Monitor:
    """Samples the process tree's RSS in a thread; ``stage()`` measures a block."""

    def __init__(self, spark: SparkSession | None = None, interval: float = 0.2) -> None:
        self.spark = spark
        self.interval = interval
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._last_stage = -1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss, _ = tree_usage()
            with self._lock:
                self._peak = max(self._peak, rss)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def attach(self, spark: SparkSession) -> None:
        self.spark = spark
        self._last_stage = self._max_stage_id()

    @contextmanager
    def stage(self, name: str) -> Iterator[StageRecord]:
        rec = StageRecord(name, load_avg_before=load_average())
        rss, cpu0 = tree_usage()
        with self._lock:
            self._peak = rss
        self._reset_jvm_peaks()
        if self.spark is not None:
            self.spark.sparkContext.setJobDescription(f"bench: {name}")
        t0 = time.perf_counter()
        try:
            yield rec
        finally:
            rec.wall_s = time.perf_counter() - t0
            rss, cpu1 = tree_usage()
            rec.cpu_s = cpu1 - cpu0
            with self._lock:
                rec.peak_rss_gib = max(self._peak, rss) / GIB
            rec.jvm_heap_peak_gib = self._jvm_heap_peak() / GIB
            if self.spark is not None:
                self.spark.sparkContext.setJobDescription(None)
                rec.spark = self._spark_stages()

    # --- JVM and Spark status, through py4j --------------------------------------------
    def _pools(self) -> list[Any]:
        if self.spark is None:
            return []
        jvm = self.spark.sparkContext._jvm
        beans = jvm.java.lang.management.ManagementFactory.getMemoryPoolMXBeans()
        return [beans.get(i) for i in range(beans.size())]

    def _reset_jvm_peaks(self) -> None:
        try:
            for pool in self._pools():
                pool.resetPeakUsage()
        except Exception:  # measurement must never break a run
            pass

    def _jvm_heap_peak(self) -> int:
        """Sum of the heap pools' peaks since the stage start (an upper bound)."""
        try:
            heap = [p for p in self._pools() if str(p.getType()) == "Heap memory"]
            return sum(p.getPeakUsage().getUsed() for p in heap)
        except Exception:
            return 0

    def _store(self) -> Any:
        assert self.spark is not None
        return self.spark.sparkContext._jsc.sc().statusStore()

    def _stage_list(self) -> list[Any]:
        jvm = self.spark.sparkContext._jvm  # type: ignore[union-attr]
        gateway = self.spark.sparkContext._gateway  # type: ignore[union-attr]
        seq = self._store().stageList(
            jvm.java.util.ArrayList(),
            False,
            False,
            gateway.new_array(jvm.double, 0),
            jvm.java.util.ArrayList(),
        )
        return [seq.apply(i) for i in range(seq.length())]

    def _max_stage_id(self) -> int:
        try:
            return max((s.stageId() for s in self._stage_list()), default=-1)
        except Exception:
            return -1

    def _spark_stages(self, top: int = 4) -> dict[str, Any]:
        """Totals over the Spark stages run since the last call, and the slowest few."""
        try:
            stages = [s for s in self._stage_list() if s.stageId() > self._last_stage]
        except Exception as err:
            return {"error": str(err)[:200]}
        if not stages:
            return {"stages": 0}
        self._last_stage = max(s.stageId() for s in stages)
        done = [s for s in stages if str(s.status()) == "COMPLETE"]
        rows = []
        for s in done:
            sub, end = s.submissionTime(), s.completionTime()
            wall = (
                (end.get().getTime() - sub.get().getTime()) / 1000
                if sub.isDefined() and end.isDefined()
                else 0.0
            )
            rows.append(
                {
                    "id": s.stageId(),
                    "name": str(s.name())[:80],
                    "tasks": s.numTasks(),
                    "wall_s": round(wall, 2),
                    "task_s": round(s.executorRunTime() / 1000, 2),
                    "records_in": s.inputRecords() + s.shuffleReadRecords(),
                    "shuffle_write_mib": round(s.shuffleWriteBytes() / 2**20, 1),
                    "spill_disk_mib": round(s.diskBytesSpilled() / 2**20, 1),
                }
            )
        rows.sort(key=lambda r: -r["task_s"])
        return {
            "stages": len(done),
            "skipped": len(stages) - len(done),
            "task_s": round(sum(r["task_s"] for r in rows), 2),
            "cpu_s": round(sum(s.executorCpuTime() for s in done) / 1e9, 2),
            "shuffle_write_mib": round(sum(r["shuffle_write_mib"] for r in rows), 1),
            "spill_disk_mib": round(sum(r["spill_disk_mib"] for r in rows), 1),
            "spill_memory_mib": round(sum(s.memoryBytesSpilled() for s in done) / 2**20, 1),
            "slowest": rows[:top],
        }

    def executor_peaks(self) -> dict[str, Any]:
        """Spark's executor peak memory metrics (cumulative since start, heartbeat-sampled)."""
        out: dict[str, Any] = {}
        try:
            for e in [
                self._store().executorList(True).apply(i)
                for i in range(self._store().executorList(True).length())
            ]:
                peak = e.peakMemoryMetrics()
                if not peak.isDefined():
                    continue
                metrics = peak.get()
                for name in (
                    "JVMHeapMemory",
                    "JVMOffHeapMemory",
                    "OnHeapExecutionMemory",
                    "OnHeapStorageMemory",
                ):
                    out[f"{e.id()}.{name}_gib"] = round(metrics.getMetricValue(name) / GIB, 3)
        except Exception as err:
            out["error"] = str(err)[:200]
        return out
