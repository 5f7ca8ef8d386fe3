"""Depthwise convs fused into the 1x1 convs that read them (`forward.fuse_depthwise`, off in
`Net.fuse`: `forward.FUSE_DEPTHWISE`), A/B per network: each such pair one dispatch with the
planner's configuration for it (`fused`: planner.dw_in_gemm_config), the same where the
depthwise output has at least 192 m-blocks and apart elsewhere (`fused_big`), and each
depthwise conv its own dispatch (`apart`, as `Net.fuse` runs them). Reported: whole-forward GPU time (timestamps) and
`net(x)` wall time, medians of rounds timed in turns; pass counts; whether the outputs are the
same bytes.

    python bench/probes/depthwise_fusion.py --models mobilenet_v2 --batches 1 8 --out x.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import q8ta_wgpu as q8  # noqa: E402
from bench.probes.net_host import build_net  # noqa: E402
from bench.probes.net_turns import arguments, compile_like_net, gpu_and_wall_row, run  # noqa: E402
from q8ta_wgpu import forward  # noqa: E402


def probe(name: str, hw: int, batches: list[int], rounds: int, repeats: int, dev: q8.Device) -> list[dict]:
    net = build_net(name, hw, dev)
    graph = net.graph_steps
    apart = forward.fuse_residual_adds(graph, graph[-1].output)
    fused = forward.fuse_depthwise(apart, graph[-1].output)
    fused_ops = [s for s in fused if isinstance(s.op, forward.DepthwiseIntoPointwiseOp)]
    rows = []
    for batch in batches:
        shape = (batch, 3, hw, hw)
        x = np.random.default_rng(batch).standard_normal(shape).astype(np.float32)
        compiled = {
            "fused": compile_like_net(net, shape, fused),
            "apart": compile_like_net(net, shape, apart),
        }
        # Fused only where the depthwise output has at least 192 m-blocks (4-width blocks of
        # output rows: 28x28 and up at batch 1, 14x14 and up at batch 8).
        shapes = net.shapes(shape)
        small = [s.op for s in fused_ops if m_blocks(s.op.dw_output_shape(shapes[s.inputs[0]])) < 192]
        for op in small:  # (no plan: the op runs its two convs)
            op._fused_plan = lambda *a, **k: None  # type: ignore[method-assign]
        compiled["fused_big"] = compile_like_net(net, shape, fused)
        for op in small:
            del op._fused_plan
        rows.append(gpu_and_wall_row(net, name, batch, compiled, x, rounds, repeats, dev))
    return rows


def m_blocks(shape: tuple[int, int, int, int]) -> int:
    n, _, h, w = shape
    return n * h * -(-w // 4)


def main() -> None:
    run(arguments(__doc__, rounds=5).parse_args(), probe)


if __name__ == "__main__":
    main()
