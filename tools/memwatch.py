#!/usr/bin/env python3
"""Run a command and report its peak memory and how much it read from disk.

Samples /proc/PID/status and /proc/PID/io of the command (Linux) every --interval seconds and
prints, when it ends:
  * peak anonymous memory (RssAnon: the heap, i.e. what the program itself holds),
  * peak file-backed resident memory (RssFile: mapped file pages, which the kernel may drop
    and read again; a memory-mapped stack shows up here),
  * peak total RSS (VmHWM),
  * bytes read from storage (read_bytes: what the command made the kernel fetch from the
    disk, page faults of memory-mapped files included, reads served by the page cache not),
    with its average rate over the run.

With --limit-gib N (root, cgroup v1 memory controller at /sys/fs/cgroup/memory) the command
runs in a fresh memory cgroup limited to N GiB, page cache included: a run that needed more
would be killed by the kernel (reported as such), so a run that finishes shows that the
command works within N GiB. The group's own peak (memory.max_usage_in_bytes, page cache
included) is printed too.

Usage: tools/memwatch.py [--interval S] [--limit-gib N] [--csv FILE] -- COMMAND ARGS...

Only the Python standard library is used.
"""

import argparse
import os
import subprocess
import sys
import time

CGROUP_ROOT = "/sys/fs/cgroup/memory"


def proc_fields(pid, name):
    """The `key: number ...` lines of /proc/PID/NAME as {key: first number}; None once the
    process is gone (or its file is not readable)."""
    out = {}
    try:
        with open(f"/proc/{pid}/{name}") as f:
            for line in f:
                key, _, rest = line.partition(":")
                fields = rest.split()
                if fields and fields[0].isdigit():
                    out[key] = int(fields[0])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--limit-gib", type=float, default=None)
    ap.add_argument("--csv", default=None, help="write every sample (seconds, RssAnon, RssFile, read_bytes) here")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        ap.error("no command given (put it after --)")

    group = None
    if args.limit_gib is not None:
        group = os.path.join(CGROUP_ROOT, f"memwatch-{os.getpid()}")
        try:
            os.mkdir(group)
            with open(os.path.join(group, "memory.limit_in_bytes"), "w") as f:
                f.write(str(int(args.limit_gib * (1 << 30))))
        except OSError as e:
            sys.exit(f"memwatch: cannot make a memory cgroup under {CGROUP_ROOT}: {e} (needs root and cgroup v1)")

    def enter_group():
        if group is not None:
            with open(os.path.join(group, "tasks"), "w") as f:
                f.write(str(os.getpid()))

    t0 = time.time()
    proc = subprocess.Popen(cmd, preexec_fn=enter_group)
    peak = {"RssAnon": 0, "RssFile": 0, "VmHWM": 0}
    last_io = None
    samples = []
    while proc.poll() is None:
        st = proc_fields(proc.pid, "status")  # kB
        io = proc_fields(proc.pid, "io")  # bytes
        if st:
            for k in peak:
                peak[k] = max(peak[k], st.get(k, 0))
        if io:
            last_io = io
        samples.append((time.time() - t0, st.get("RssAnon", 0) if st else 0, st.get("RssFile", 0) if st else 0,
                        io.get("read_bytes", 0) if io else 0))
        time.sleep(args.interval)
    wall = time.time() - t0
    rc = proc.returncode

    gib = 1 << 30
    print(f"memwatch: exit status {rc}, wall {wall:.1f} s")
    print(f"memwatch: peak RssAnon {peak['RssAnon'] * 1024 / gib:.2f} GiB, peak RssFile "
          f"{peak['RssFile'] * 1024 / gib:.2f} GiB, peak RSS (VmHWM, last sample) {peak['VmHWM'] * 1024 / gib:.2f} GiB")
    if last_io:
        rb = last_io.get("read_bytes", 0)
        print(f"memwatch: read from storage {rb / gib:.2f} GiB ({rb / gib / wall:.3f} GiB/s averaged over the run; "
              f"up to the last sample)")
    if group is not None:
        try:
            with open(os.path.join(group, "memory.max_usage_in_bytes")) as f:
                gpeak = int(f.read())
            with open(os.path.join(group, "memory.failcnt")) as f:
                fails = int(f.read())
            print(f"memwatch: cgroup limit {args.limit_gib:g} GiB, group peak {gpeak / gib:.2f} GiB "
                  f"(page cache included), times the limit was hit: {fails}")
            if rc == -9:
                print("memwatch: the command was killed (SIGKILL): most likely out of memory within the limit")
        finally:
            try:
                os.rmdir(group)
            except OSError:
                pass
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("seconds,rss_anon_kib,rss_file_kib,read_bytes\n")
            for s in samples:
                f.write(f"{s[0]:.2f},{s[1]},{s[2]},{s[3]}\n")
    sys.exit(rc if rc >= 0 else 128 - rc)


if __name__ == "__main__":
    main()
