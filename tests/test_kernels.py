"""Every lowrank-amt command asks torch for the AVX2 kernels on x86-64 (kernels.py says
why), unless the user chose other ones; other processors are left alone."""

import os
import subprocess
import sys

from lowrank_amt.runtime.kernels import PINNED_KERNELS, pin_kernels


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


def test_the_suite_runs_on_the_commands_kernels_from_its_first_test():
    """conftest.py pins before torch's first kernel: a test that calls no command (and one
    run alone, first) trains on the kernels a `lowrank-amt` command would use."""
    import platform

    import pytest
    import torch
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("kernels are pinned on x86-64 only")
    env = {k: v for k, v in os.environ.items() if k not in PINNED_KERNELS}
    native = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                            capture_output=True, text=True, env=env, check=True).stdout.strip()
    expected = "AVX2" if native in ("AVX2", "AVX512") else native
    assert torch.backends.cpu.get_cpu_capability() == expected
    assert all(os.environ.get(k) == v for k, v in PINNED_KERNELS.items())
