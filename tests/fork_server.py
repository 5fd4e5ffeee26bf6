"""One child process that has imported torch, pandas and the other third-party libraries the
runs share (scipy.optimize, typer, rich, networkx, matplotlib.pyplot), and never ttplan, forks a copy of
itself for each run of the tests that are about a process start (tests/test_benchmarks.py:
`python benchmarks/NAME.py --help`; tests/test_hostile_inputs.py: `python -m ttplan ...`).

Each fresh interpreter that imports torch costs ~1.5 s of CPU; the suite pays it once here
instead of once per test module. The server is started with OMP_NUM_THREADS=1 (libgomp reads
it when torch loads); a copy that needs another thread count sets torch's itself. Each copy
runs the code a test sends with `run` (a JSON dict) as its only name, with fd 0 on /dev/null,
and ends either through `os._exit` or through the interpreter's own exit (a SystemExit raised
by the code leaves the server's loop in the copy, as it would leave a script). The server
checks before every fork that ttplan was never imported, so every copy imports it afresh.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys

SERVER = r"""
import json, os, sys
# the third-party libraries the runs share, imported once before forking (never ttplan)
import torch, pandas, scipy.optimize, typer, rich, networkx, matplotlib.pyplot
requests, replies = sys.stdin, sys.stdout
for line in requests:
    request = json.loads(line)
    assert not any(n == "ttplan" or n.startswith("ttplan.") for n in sys.modules)
    replies.flush()
    pid = os.fork()
    if pid == 0:  # the copy: the test's code, then the interpreter's exit unless it _exits
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        exec(compile(request["code"], "<forked run>", "exec"),
             {"__name__": "__forked__", "run": request["run"]})
        sys.exit(0)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    replies.write(json.dumps(status) + "\n")
    replies.flush()
"""


class ForkServer:
    def __init__(self, cwd: str, timeout_s: float = 300):
        self.timeout_s = timeout_s
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, cwd=cwd, env=dict(os.environ, OMP_NUM_THREADS="1"))

    def run(self, code: str, run: dict) -> int:
        """Fork a copy that runs `code` with `run`; its exit status."""
        self.process.stdin.write(json.dumps({"code": code, "run": run}) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], self.timeout_s)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.process.kill()
            raise AssertionError(f"the fork server stopped: {self.process.stderr.read()[-2000:]}")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=self.timeout_s)
        self.process.stdout.close()
        self.process.stderr.close()
