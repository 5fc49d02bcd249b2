"""Results files: every figure the README quotes is written by a command into benchmarks/results/, with the
machine, the commit and the settings it was measured with, so a number can be regenerated instead of retyped."""

from __future__ import annotations

import datetime
import math
import os
import platform
import subprocess

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple:
    """Wilson score interval for a success rate k / n (95% by default): honest at small n and near 0 or 1."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas() -> str:
    try:
        info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{info.get('name')} {info.get('version')}"
    except Exception:  # older NumPy: no dict mode
        return "unknown"


def commit() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    # Only code changes what is measured: results files and the README written since the last commit do not
    changed = [line for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
               if line.endswith(".py")]
    return sha + (" (with uncommitted changes)" if changed else "")


def header(title: str, command: str, settings: str) -> str:
    """The lines that open every results file: what, how, where, when."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        f"# {title}",
        "",
        f"- command: `{command}`",
        f"- date: {now}",
        f"- machine: {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"NumPy {np.__version__}, BLAS {blas()}",
        f"- commit: {commit()}",
        f"- settings: {settings}",
        "",
    ])


def write(name: str, text: str) -> str:
    """Write benchmarks/results/<name>.md and return its path."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"{name}.md")
    with open(path, "w") as f:
        f.write(text.rstrip() + "\n")
    return path
