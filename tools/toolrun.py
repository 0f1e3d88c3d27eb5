"""Helpers shared by the matrix scripts in this folder."""

import subprocess
import sys


def sh(cmd):
    """Run `cmd` (a list of arguments) and return its standard output; exit with its standard
    error when it fails."""
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    return p.stdout
