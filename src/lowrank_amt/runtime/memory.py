"""Memory measurement of the running process (train.json's ``peak_rss_mb``) and of the
machine (the limit full-batch training must fit in)."""

from __future__ import annotations

import os
import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB): VmHWM, which starts afresh at exec
    (ru_maxrss would carry a parent's peak over fork and exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_memory_mb() -> float:
    """Physical memory of this machine (MB)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
