"""``python -m speedllm.ops``: analytical figures of the op graph as one JSON object.

For each model shape: unfused and fused node counts, weight bytes and MACs per token,
KV-cache bytes, tensor bytes between commands, scratchpad bytes with and without buffer
reuse, and the fusion ablation. Computed from the shapes, not measured on RTL.

    python -m speedllm.ops                          # stories260K and stories15M
    python -m speedllm.ops --shape tinyllama --pos 0
    python -m speedllm.ops --checkpoint ../shared/models/stories260K.bin
    python -m speedllm.ops --shape stories260K --no-ablation --list-nodes fused
"""

from __future__ import annotations

import argparse
import json
import sys

from speedllm.golden.formats import DEFAULT_GROUP_SIZE, DEFAULT_KV_BITS

from .fusion import FusionConfig, ablation, ablation_configs, fuse
from .graph import MODEL_SHAPES, build_graph
from .memplan import DEFAULT_ALIGN, memory_report


def shape_summary(args, *, pos=None, group_size=DEFAULT_GROUP_SIZE, kv_bits=DEFAULT_KV_BITS,
                  kv_block_exponent=True, align=DEFAULT_ALIGN, with_ablation=True,
                  list_nodes=None) -> dict:
    """The figures of one model shape (see the module docstring)."""
    graph = build_graph(args, pos, group_size=group_size, kv_bits=kv_bits,
                        kv_block_exponent=kv_block_exponent)
    fused = fuse(graph, FusionConfig())
    out = {
        "dims": {"dim": args.dim, "hidden_dim": args.hidden_dim, "n_layers": args.n_layers,
                 "n_heads": args.n_heads, "n_kv_heads": args.n_kv_heads,
                 "vocab_size": args.vocab_size, "seq_len": args.seq_len},
        "group_size": group_size, "kv_bits": kv_bits,
        "kv_format": "block-exponent" if kv_block_exponent else "fixed-point", "align": align,
        **graph.summary(),
        "fused_nodes": len(fused.nodes),
        "memory_unfused": memory_report(graph, align),
        "memory_fused": memory_report(fused, align),
    }
    if with_ablation:
        rows = ablation(graph)
        for row, cfg in zip(rows, ablation_configs()):
            mem = memory_report(fuse(graph, cfg), align)
            row["scratchpad_bytes_reuse"] = mem["scratchpad_bytes_reuse"]
            row["scratchpad_bytes_no_reuse"] = mem["scratchpad_bytes_no_reuse"]
        out["fusion_ablation"] = rows
    if list_nodes:
        out["node_list"] = [n.to_dict() for n in (fused if list_nodes == "fused" else graph).nodes]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m speedllm.ops", description=__doc__.splitlines()[0])
    p.add_argument("--shape", action="append", choices=sorted(MODEL_SHAPES),
                   help="model shape (repeatable; default stories260K and stories15M)")
    p.add_argument("--checkpoint", action="append", default=[],
                   help="take the dims from a llama2.c checkpoint file (repeatable)")
    p.add_argument("--pos", type=int, default=None, help="position (default seq_len - 1)")
    p.add_argument("--group-size", type=int, default=DEFAULT_GROUP_SIZE)
    p.add_argument("--kv-bits", type=int, default=DEFAULT_KV_BITS, choices=(8, 16, 32))
    p.add_argument("--kv-fixed", action="store_true",
                   help="fixed-point KV cache (no per-head exponent bytes)")
    p.add_argument("--align", type=int, default=DEFAULT_ALIGN, help="scratchpad beat bytes")
    p.add_argument("--no-ablation", action="store_true", help="omit the per-rule ablation")
    p.add_argument("--list-nodes", choices=["unfused", "fused"],
                   help="also list every node of the unfused or fully fused graph")
    a = p.parse_args(argv)
    result = {"computed": "analytical (from the model shapes), not measured on RTL"}
    try:
        models = {}
        for path in a.checkpoint:
            from speedllm.golden.checkpoint import load_checkpoint
            models[path] = load_checkpoint(path).args
        for name in a.shape or ([] if a.checkpoint else ["stories260K", "stories15M"]):
            models[name] = MODEL_SHAPES[name]
        for name, args in models.items():
            result[name] = shape_summary(args, pos=a.pos, group_size=a.group_size,
                                         kv_bits=a.kv_bits, kv_block_exponent=not a.kv_fixed,
                                         align=a.align,
                                         with_ablation=not a.no_ablation,
                                         list_nodes=a.list_nodes)
    except (ValueError, OSError) as e:      # SpeedLLMError's file errors are ValueErrors
        print(f"python -m speedllm.ops: error: {e}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
