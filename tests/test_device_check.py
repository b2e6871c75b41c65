"""``benchmarks/device_check.py`` runs on a CPU (its ``--quick`` smoke mode) and writes its JSON.

On this CPU the "default" device is the CPU itself, so the agreement section must
report exact equality (0.0) and the sharded section one device; the timing numbers
are only checked to be positive. The whole quick run takes over a minute on 2 loaded
cores (the p = 166k model compiles), so it is slow; the default run checks two
sections.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.py"


def _run(tmp_path, *sections):
    out = tmp_path / "dc.json"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--out", str(out)]
    if sections:
        cmd += ["--sections", *sections]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(out.read_text()), proc.stdout


def test_device_check_quick_devices_and_sharded(tmp_path):
    rep, stdout = _run(tmp_path, "devices", "sharded")
    assert rep["devices"]["ok"] and rep["devices"]["devices"][0]["kind"]
    assert rep["devices"]["x64"] is True
    sh = rep["sharded"]
    assert sh["ok"] and sh["devices"] == 1 and sh["max_rel_grad"] == 0.0
    assert sh["grad_steady_s_1"] > 0
    assert "every section ran" in stdout


@pytest.mark.slow
def test_device_check_quick_every_section(tmp_path):
    rep, _ = _run(tmp_path)
    for name in ("devices", "agreement", "hessian_1e4", "large_node", "sharded"):
        assert rep[name]["ok"], rep[name].get("traceback")
    assert rep["agreement"]["max_rel_grad"] == 0.0  # the default device is the CPU here
    assert rep["hessian_1e4"]["p"] == 502 and rep["hessian_1e4"]["finite"]
    assert rep["large_node"]["p"] > 160_000
