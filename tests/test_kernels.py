"""Every lowrank-amt command asks torch for the AVX2 kernels on x86-64 (kernels.py says
why), unless the user chose other ones; other processors are left alone."""

import os
import subprocess
import sys

from lowrank_amt.kernels import PINNED_KERNELS, pin_kernels


def test_pinned_on_x86_64_unless_already_set_and_never_elsewhere():
    environ = {"ONEDNN_MAX_CPU_ISA": "ALL"}
    assert pin_kernels(environ, "x86_64") == {"ATEN_CPU_CAPABILITY": "avx2"}
    assert environ == {"ONEDNN_MAX_CPU_ISA": "ALL", "ATEN_CPU_CAPABILITY": "avx2"}
    arm = {}
    assert pin_kernels(arm, "aarch64") == {} and arm == {}


def test_a_command_runs_torch_on_the_pinned_kernels():
    import torch
    native = torch.backends.cpu.get_cpu_capability()
    # the command's parser, replaced, reports the kernels torch uses once main() started
    probe = ("import torch\n"
             "from lowrank_amt import cli\n"
             "def report():\n"
             "    raise SystemExit(torch.backends.cpu.get_cpu_capability())\n"
             "cli.build_parser = report\n"
             "cli.main([])\n")
    env = {k: v for k, v in os.environ.items() if k not in PINNED_KERNELS}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    used = done.stderr.strip().splitlines()[-1]
    assert used == ("AVX2" if native in ("AVX2", "AVX512") else native)
