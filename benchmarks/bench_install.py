"""What each install costs: the base package (the cloud client) against the extras, timed in the same run.

    .venv/bin/python benchmarks/bench_install.py [--with-llm] [--no-cache]

Builds the wheel from this checkout, then installs it into fresh venvs: the base package (wheels only, CC and CXX
set to /bin/false: it must not compile), then ``[local]`` on top, and with ``--with-llm`` ``[llm]`` on top of that
(llama-cpp-python compiles from source, and 1.1 GB of weights come down). ``--no-cache`` keeps pip's cache out, as on
a fresh machine. Prints a Markdown table: seconds, MB of the venv, and each step against the base install.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def megabytes(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def pip_install(venv: Path, spec: str, *, no_cache: bool, compiler: bool) -> float:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if not compiler:
        env |= {"CC": "/bin/false", "CXX": "/bin/false"}
    command = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", spec]
    command += [] if compiler else ["--only-binary=:all:"]
    command += ["--no-cache-dir"] if no_cache else []
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--with-llm", action="store_true", help="also install [llm] (compiles llama.cpp: minutes)")
    parser.add_argument("--no-cache", action="store_true", help="no pip cache, as on a fresh machine")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-install-"))
    try:
        subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", str(work / "dist"), str(ROOT)],
                       check=True, capture_output=True)
        wheel = next((work / "dist").glob("*.whl"))
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        empty = megabytes(venv)
        rows = [("base (the cloud client)", pip_install(venv, str(wheel), no_cache=args.no_cache, compiler=False), megabytes(venv))]
        rows.append(("+ [local] (speech server)", pip_install(venv, f"{wheel}[local]", no_cache=args.no_cache, compiler=False),
                     megabytes(venv)))
        if args.with_llm:
            rows.append(("+ [llm] (local LLM)", pip_install(venv, f"{wheel}[llm]", no_cache=args.no_cache, compiler=True),
                         megabytes(venv)))
        base_s, base_mb = rows[0][1], rows[0][2] - empty
        print(f"pip cache: {'off' if args.no_cache else 'on'}; an empty venv is {empty:.0f} MB\n")
        print("| install | seconds | × base time | venv MB (added) |")
        print("|---|---:|---:|---:|")
        total = 0.0
        for name, seconds, mb in rows:
            total += seconds
            print(f"| {name} | {seconds:.0f} | {total / base_s:.1f} (cumulative) | {mb - empty:.0f} ({mb - empty - base_mb:+.0f} vs base) |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
