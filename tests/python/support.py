"""Shared by the Python tests: where the repository, the dwdp binary and the package are, and
running the CLI to compare with.

CTest sets PYTHONPATH (python/), DWDP_LIBRARY (the built libdwdp.so) and DWDP_BIN (the built
dwdp binary); run by hand, the default build tree is used.
"""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIOS = os.path.join(REPO, "scenarios")
DWDP_BIN = os.environ.get("DWDP_BIN", os.path.join(REPO, "build", "default", "cli", "dwdp"))

if os.path.join(REPO, "python") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "python"))


class Cli:
    """One run of the dwdp binary: exit code, stdout parsed as JSON (None when it is not),
    and stderr."""

    def __init__(self, args, cwd=None):
        run = subprocess.run([DWDP_BIN] + list(args), capture_output=True, text=True, cwd=cwd,
                             check=False)
        self.code = run.returncode
        self.stderr = run.stderr
        try:
            self.json = json.loads(run.stdout)
        except ValueError:
            self.json = None

    def error_sentence(self):
        """The first stderr line without the CLI's "error: " prefix."""
        line = self.stderr.splitlines()[0] if self.stderr else ""
        return line[len("error: "):] if line.startswith("error: ") else line


def scenario_files(folder=""):
    directory = os.path.join(SCENARIOS, folder)
    return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                  if name.endswith(".yaml"))
