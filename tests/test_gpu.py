"""Checks that need a CUDA device (skipped without one)."""

from __future__ import annotations

import pytest
import torch

from cinecli.memory.bank import BankSpec, MemoryBank

pytestmark = pytest.mark.gpu


def test_offloaded_history_is_page_locked_at_its_exact_size() -> None:
    spec = BankSpec(num_layers=2, batch=1, tokens_per_frame=6, num_heads=2, head_dim=8, dtype=torch.bfloat16,
                    device=torch.device("cuda"), storage="int8", offload=True, capacity=20)
    bank = MemoryBank(spec)
    before = torch.cuda.host_memory_stats().get("allocated_bytes.current", 0)
    g = torch.Generator(device="cuda").manual_seed(0)
    frames = [torch.randn(1, 1, 6, 2, 8, device="cuda", generator=g, dtype=torch.bfloat16) for _ in range(5)]
    for f in frames:
        for layer in range(2):
            bank.stage(layer, f, -f)
        bank.commit()
    store = bank._layers[0]
    assert store.k is not None and store.k.device.type == "cpu" and store.k.is_pinned()
    assert store.k.shape[1] == 20  # the film's length (as planned), not a power of two
    # nothing went through the caching host allocator (which rounds blocks up to a power of two)
    assert torch.cuda.host_memory_stats().get("allocated_bytes.current", 0) == before
    idx = torch.tensor([[4, 0, 2]], device="cuda")
    k, v = bank.gather(1, idx, host_frames=[[4, 0, 2]])
    want = torch.cat([frames[4], frames[0], frames[2]], dim=1)
    torch.testing.assert_close(k.float(), want.float(), atol=0.05, rtol=0.02)  # int8 storage
    torch.testing.assert_close(v.float(), -want.float(), atol=0.05, rtol=0.02)
