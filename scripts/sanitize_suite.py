"""compute-sanitizer over the whole CUDA test suite, with a complete record even when a process dies.

Under compute-sanitizer, pytest processes running many tests ended in segmentation faults
(session 4: whole suite; session 5: chunks of 40), mostly while XLA compiled the pure-JAX
twins. So: the CUDA cases are collected once, split into chunks, and run as one process per
(tool, chunk), ``--jobs`` at a time. When a process dies, the test it was running (known from
``scripts/pytest_progress.py``) is retried alone, and the chunk goes on after it. The record
says, per tool, how many cases passed under the tool, the sanitizer's error count and the
kernels it named, and any case that killed the tool twice.

Usage on the GPU machine (after a build):
    python3 scripts/sanitize_suite.py --out $OUT/san [--tools memcheck racecheck initcheck]
"""

import argparse
import collections
import concurrent.futures as cf
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ERRORS = re.compile(r"ERROR SUMMARY: (\d+) error")
KINDS = re.compile(r"=========\s+(Invalid [a-z_ ]+?|Uninitialized [a-z_ ]+?|Race reported [a-z_ ]+?|"
                   r"Host API memory access error)( of size| at| between|$)")
WHERE = re.compile(r"=========\s+at (.+?)\+0x")


def collect(tests, marker):
    out = subprocess.run([sys.executable, "-m", "pytest", *tests, "-m", marker, "--collect-only",
                          "-q", "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    return [line for line in out.stdout.splitlines() if "::" in line]


def kernel_name(where):
    """'void jax_fp4::cuda::<unnamed>::BlockQuantizeKernel<...>(...)' -> 'BlockQuantizeKernel'."""
    name = where.split("(")[0].replace("<unnamed>", "anon").split("<")[0]
    return name.split("::")[-1].split()[-1] if name.strip() else where[:60]


def run_one(tool, ids, tag, args):
    log = os.path.join(args.out, f"{tool}_{tag}.log")
    progress = os.path.join(args.out, f"{tool}_{tag}.progress")
    env = dict(os.environ, PYTEST_PROGRESS_FILE=progress, JAX_FP4_REQUIRE_CUDA="1",
               JAX_FP4_DEVICE_WRITTEN_INPUTS="1",
               PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    cmd = ["compute-sanitizer", "--tool", tool, "--error-exitcode", "99", "--print-limit",
           "200", sys.executable, "-m", "pytest", "-p", "pytest_progress", "-q", "-p", "no:xdist",
           "-p", "no:cacheprovider", *ids]
    t0 = time.time()
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                timeout=args.timeout, check=False).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    outcomes, started = {}, []
    if os.path.exists(progress):
        with open(progress) as f:
            progress_lines = f.read().splitlines()
        for line in progress_lines:
            word, _, nodeid = line.partition(" ")
            if word == "start":
                started.append(nodeid)
            else:
                outcomes[nodeid] = word
    with open(log, errors="replace") as f:
        text = f.read()
    errors = sum(int(n) for n in ERRORS.findall(text))
    kinds = collections.Counter()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = KINDS.search(line)
        if m:
            where = next((WHERE.search(x).group(1) for x in lines[i + 1:i + 3] if WHERE.search(x)),
                         "host API call")
            kinds[f"{m.group(1).strip()} in {kernel_name(where)}"] += 1
    return {"tool": tool, "tag": tag, "rc": rc, "seconds": round(time.time() - t0, 1), "ids": ids,
            "outcomes": outcomes, "started": started, "errors": errors, "kinds": dict(kinds)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--tools", nargs="+", default=["memcheck", "racecheck", "initcheck"])
    ap.add_argument("--tests", nargs="+", default=["tests"])
    ap.add_argument("--marker", default="cuda and not slow")
    ap.add_argument("--large", default="tests/test_large.py",
                    help="run alone, under memcheck only (tens of GB of GPU memory)")
    ap.add_argument("--chunk", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=400, help="seconds per process")
    ap.add_argument("--budget", type=float, default=480, help="no new process after this")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()
    ids = collect(args.tests, args.marker)
    print(f"{len(ids)} cases, chunks of {args.chunk}, tools {args.tools}", flush=True)
    work = queue.Queue()
    if args.large and "memcheck" in args.tools:
        work.put(("memcheck", [args.large], "large", False))
    for tool in args.tools:
        for n, i in enumerate(range(0, len(ids), args.chunk)):
            work.put((tool, ids[i:i + args.chunk], f"c{n:03d}", False))
    results, crashes, not_run = [], [], []
    lock = threading.Lock()
    retries = collections.Counter()

    def worker():
        while True:
            try:
                tool, chunk, tag, alone = work.get_nowait()
            except queue.Empty:
                return
            if time.time() - t_start > args.budget:
                with lock:
                    not_run.extend((tool, i) for i in chunk)
                continue
            r = run_one(tool, chunk, tag, args)
            with lock:
                results.append(r)
                done = set(r["outcomes"])
                left = [i for i in chunk if i not in done]
                if r["rc"] in (0, 1, 99) or not left:
                    continue
                # Died while running `culprit`: retry it alone once, go on after it.
                culprit = next((i for i in reversed(r["started"]) if i not in done), left[0])
                rest = [i for i in left if i != culprit]
                if alone:
                    crashes.append((tool, culprit, r["rc"]))
                else:
                    retries[tool] += 1
                    work.put((tool, [culprit], f"{tag}r{retries[tool]}", True))
                if rest:
                    work.put((tool, rest, f"{tag}n{retries[tool]}", alone))

    with cf.ThreadPoolExecutor(args.jobs) as pool:
        # Workers may add work; keep one worker per slot until the queue stays empty.
        while True:
            futures = [pool.submit(worker) for _ in range(args.jobs)]
            cf.wait(futures)
            if work.empty():
                break

    lines = [(f"compute-sanitizer over {len(ids)} CUDA test cases (+ {args.large} under "
              f"memcheck), {time.time() - t_start:.0f} s, "
              f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")]
    summary = {}
    for tool in args.tools:
        rs = [r for r in results if r["tool"] == tool]
        final = {}
        for r in rs:  # a retry's outcome replaces nothing: every id finishes in one process
            final.update(r["outcomes"])
        counts = collections.Counter(final.values())
        kinds = collections.Counter()
        for r in rs:
            kinds.update(r["kinds"])
        tool_crashes = [(i, rc) for t, i, rc in crashes if t == tool]
        died = [r for r in rs if r["rc"] not in (0, 1, 99)]
        summary[tool] = {"processes": len(rs), "outcomes": dict(counts),
                         "errors": sum(r["errors"] for r in rs), "kinds": dict(kinds),
                         "processes_died": len(died), "crashed_twice": tool_crashes,
                         "not_run": [i for t, i in not_run if t == tool]}
        lines.append(f"== {tool}: {len(rs)} processes ({len(died)} died and were resumed), "
                     f"outcomes {dict(counts)}, sanitizer errors {summary[tool]['errors']}")
        for k, n in kinds.most_common(12):
            lines.append(f"   {n:5d}  {k}")
        for i, rc in tool_crashes:
            lines.append(f"   died twice (rc {rc}): {i}")
        if summary[tool]["not_run"]:
            lines.append(f"   not run (budget): {len(summary[tool]['not_run'])} cases")
        failed = [i for i, o in final.items() if o == "failed"]
        for i in failed[:10]:
            lines.append(f"   FAILED {i}")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(args.out, "summary.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({"summary": summary, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
