#!/usr/bin/env python3
"""Where a Lambda binary's start-up goes, from a system-call trace.

Runs each binary under `strace -f -ttt -e trace=execve,openat,read,connect` with the
environment Lambda gives it (region, credentials, table names; the SDK endpoint and the
Runtime API on a closed loopback port, so nothing answers) and reads the trace up to its first
connection to the Runtime API, which is where start-up ends (`GET /runtime/invocation/next`).
It prints, per binary: the files it opened before that, grouped by directory, what it read
from them, and how the time splits between the certificate store, the AWS profile files and
the rest. strace slows every traced system call, so the times are inflated where a binary
makes many calls (reading a directory of certificates): use them to see where start-up goes;
the benchmark's cold starts (run.sh) are the figures.

  python3 infra/bench/trace_startup.py [--layout lambda] BINARY...

`--layout lambda` gives the binaries the certificate layout of Lambda's provided.al2023 (one
bundle, `SSL_CERT_FILE`, and an empty `SSL_CERT_DIR`), as the benchmark does.
"""

import collections
import os
import re
import subprocess
import sys
import tempfile

RUNTIME_API = "127.0.0.1:9"  # the discard port: closed on loopback


def environment(layout_dir):
    env = {
        "AWS_LAMBDA_RUNTIME_API": RUNTIME_API,
        "AWS_LAMBDA_FUNCTION_NAME": "trace",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_ENDPOINT_URL": "http://" + RUNTIME_API,
        "USERS_TABLE": "trace-users",
        "BALANCES_TABLE": "trace-balances",
        "AUDIT_TABLE": "trace-audit",
        "OUTBOX_TABLE": "trace-outbox",
        "MAIL_FROM": "no-reply@example.sa",
    }
    if layout_dir:
        env["SSL_CERT_FILE"] = "/etc/ssl/certs/ca-certificates.crt"
        env["SSL_CERT_DIR"] = layout_dir
    return env


LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(\w+)\((.*)$")


def trace(binary, layout_dir):
    with tempfile.NamedTemporaryFile(suffix=".trace") as out:
        subprocess.run(
            ["strace", "-f", "-ttt", "-e", "trace=execve,openat,read,connect", "-o", out.name, binary],
            env=environment(layout_dir),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        with open(out.name) as f:
            lines = f.read().splitlines()
    start = end = None
    fds = {}  # (pid, fd) -> path
    opened = []  # (time, path)
    read_bytes = collections.Counter()  # path -> bytes
    first_last = {}  # group -> [first time, last time]
    for line in lines:
        m = LINE.match(line)
        if not m:
            continue
        pid, at, call, rest = m.group(1), float(m.group(2)), m.group(3), m.group(4)
        if start is None and call == "execve":
            start = at
        if call == "connect" and RUNTIME_API.split(":")[1] in rest and "sin_port=htons(9)" in rest:
            end = at
            break
        if call == "openat":
            path = re.search(r'"([^"]*)"', rest)
            fd = re.search(r"= (\d+)$", rest)
            if path:
                opened.append((at, path.group(1)))
                if fd:
                    fds[(pid, fd.group(1))] = path.group(1)
                group = classify(path.group(1))
                first_last.setdefault(group, [at, at])[1] = at
        if call == "read":
            fd = re.match(r"(\d+),", rest)
            size = re.search(r"= (\d+)$", rest)
            if fd and size and (pid, fd.group(1)) in fds:
                path = fds[(pid, fd.group(1))]
                read_bytes[path] += int(size.group(1))
                group = classify(path)
                first_last.setdefault(group, [at, at])[1] = at
    return start, end, opened, read_bytes, first_last


def classify(path):
    if path.startswith("/etc/ssl") or path.startswith("/usr/share/ca-certificates") or path.startswith("/etc/pki"):
        return "certificate store"
    if "/.aws/" in path or path.endswith("/.aws"):
        return "AWS profile files"
    return "other (libraries, /proc, /sys)"


def main(arguments):
    layout_dir = None
    if arguments[:2] == ["--layout", "lambda"]:
        layout_dir = tempfile.mkdtemp(prefix="empty-cert-dir-")
        arguments = arguments[2:]
    for binary in arguments:
        start, end, opened, read_bytes, first_last = trace(binary, layout_dir)
        if start is None or end is None:
            print(f"{binary}: no start-up traced (start {start}, end {end})")
            continue
        total = (end - start) * 1000
        print(f"\n{binary}: {total:.1f} ms under strace from execve to the Runtime API connect")
        groups = collections.Counter(classify(path) for _, path in opened)
        for group, count in sorted(groups.items()):
            paths = {path for _, path in opened if classify(path) == group}
            size = sum(read_bytes[path] for path in paths)
            first, last = first_last.get(group, [start, start])
            print(f"  {group}: {count} opened, {size / 1024:.0f} KiB read, from +{(first - start) * 1000:.1f} ms to +{(last - start) * 1000:.1f} ms")
        aws = sorted({path for _, path in opened if classify(path) == "AWS profile files"})
        if aws:
            print("  profile files: " + ", ".join(aws))
    if layout_dir:
        os.rmdir(layout_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
