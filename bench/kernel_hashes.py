"""Which float kernels round alike on two machines: a hash of the result of each kind of
float32 work the models do (MKL's matrix products, ATen's elementwise ops and sums,
oneDNN's convolutions, an LSTM, Adam on an NMF loss with W = exp(theta) as the gradient
form trains it), from inputs that are the same bytes everywhere.

    python bench/kernel_hashes.py            # the kernels as torch picks them
    lowrank-amt's pinning: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python bench/kernel_hashes.py

Run it on two CPUs (AMD and Intel) with the same torch: equal hashes mean that kind of
work is bit-identical there. MKL_VERBOSE=1 shows which instruction set MKL dispatched.
"""

import hashlib
import os

import numpy as np
import torch


def digest(tensor) -> str:
    return hashlib.sha256(tensor.detach().contiguous().numpy().tobytes()).hexdigest()[:12]


def hashes() -> dict:
    rng = np.random.default_rng(0)
    rand = lambda *shape: torch.from_numpy(rng.random(shape, dtype=np.float32))  # noqa: E731
    V, W, H = rand(264, 2000), rand(264, 88), rand(88, 2000)
    out = {"matmul": digest(W @ H), "matmul_transposed": digest(W.T @ V), "batched_matmul": digest(rand(4, 64, 88) @ rand(4, 88, 50)),
           "elementwise": digest(torch.exp(torch.log(V + 1) * 1.3) / (V + 0.5)), "sum": digest(V.sum(dim=1)),
           "conv1d": digest(torch.nn.functional.conv1d(rand(1, 264, 300), rand(88, 264, 5))),
           "conv2d": digest(torch.nn.functional.conv2d(rand(1, 4, 88, 100), rand(8, 4, 3, 3)))}
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(88, 32, batch_first=True, bidirectional=True)
    out["lstm"] = digest(lstm(rand(2, 100, 88))[0])
    theta = torch.nn.Parameter(torch.log(W.clone()))
    activations = torch.nn.Parameter(H.clone())
    optimizer = torch.optim.Adam([theta, activations], lr=1e-2)
    for _ in range(100):
        optimizer.zero_grad()
        R = torch.exp(theta) @ torch.relu(activations) + 1e-6
        loss = (V * torch.log(V / R + 1e-9) - V + R).sum()
        loss.backward()
        optimizer.step()
    out["adam_nmf"] = digest(theta)
    return out


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    settings = " ".join(f"{k}={os.environ[k]}" for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                                          "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR") if k in os.environ)
    print(f"torch {torch.__version__}, kernels {torch.backends.cpu.get_cpu_capability()}, "
          f"threads {torch.get_num_threads()} {settings}")
    for name, value in hashes().items():
        print(f"  {name:18s} {value}")
