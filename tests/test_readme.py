"""Every Python block of the README runs as written, top to bottom in one
namespace (as a reader pastes them into one session), and its headline
numbers are what the README says."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_python_blocks():
    assert len(_blocks()) >= 5


def test_every_readme_block_runs_as_written(tmp_path):
    script = textwrap.dedent("""
        import re, sys
        blocks = re.findall(r"```python\\n(.*?)```", open(sys.argv[1]).read(), re.S)
        ns = {}
        for i, block in enumerate(blocks):
            exec(compile(block, f"README.md python block {i}", "exec"), ns)
        # the numbers the README states
        v = ns["sg"].Value(-4.0)
        z = 2 * v + 2 + v; q = z.relu() + z * v; out = (z * z).relu() + q + q * v
        out.backward()
        assert (out.data, v.grad) == (-20.0, 46.0)
        print("OK", len(blocks))
        """)
    proc = subprocess.run([sys.executable, "-c", script, str(README)], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path,
                          env={**__import__("os").environ, "SYMGRAD_CACHE_DIR": str(tmp_path / "c")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == f"OK {len(_blocks())}"
