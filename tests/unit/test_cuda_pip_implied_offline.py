"""The offline tests of tests/integration/test_cuda_pip_implied.py (no network, no program started).

CUDA that comes with the pip packages (torch's NVIDIA wheels) and no install.cuda: the lock
names the release, and the image gets NVIDIA's env, library path and envd's GPU labels for it,
exactly as install.cuda of that release would give.
"""

from __future__ import annotations

import pytest

from envnix.spec.cuda import implied_by_wheels


@pytest.mark.parametrize(("wheels", "implied"), [
    ([("torch", "2.5.1"), ("nvidia-cuda-runtime-cu12", "12.4.127"),
      ("nvidia-cudnn-cu12", "9.1.0.70")],
     ("12.4", "9", "nvidia-cuda-runtime-cu12 12.4.127")),
    ([("nvidia_cuda_runtime", "13.0.96")], ("13.0", "", "nvidia_cuda_runtime 13.0.96")),
    ([("torch", "2.0.1+cu118"), ("numpy", "1.26.4")], ("11.8", "", "torch 2.0.1+cu118")),
    ([("torch", "2.5.1+cpu"), ("numpy", "1.26.4")], None),
    ([("nvidia-ml-py", "12.560.30")], None),
])
def test_implied_release_from_locked_wheels(wheels: list[tuple[str, str]],
                                            implied: tuple[str, str, str] | None) -> None:
    assert implied_by_wheels(wheels) == implied
