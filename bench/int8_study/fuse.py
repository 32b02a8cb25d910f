"""onnxruntime.transformers fusion on our exported graph (Attention, SkipLayerNormalization, BiasGelu).

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/int8_study/fuse.py SRC.onnx DST.onnx [--sln] [--noattn]

The optimizer doesn't take our graph as exported (its symbolic shape inference fails on the token-type
GatherElements and on the pooling/normalisation after the encoder; its attention fusion doesn't know the
transformers-5 mask or a Mul-scaled score), so: the all-zero token-type lookup is folded into a constant
row, the mask becomes the classic (1 - mask) * -10000 with two Unsqueezes, the score scaling a Div; the
encoder (up to its last LayerNormalization) is cut out, fused with num_heads=12, hidden=384 (MiniLM) and the
raw 2-D mask format, and the pooling/heads are put back. --sln also fuses SkipLayerNormalization (slow on
onnxruntime 1.31 here, see docs/export.md); --noattn leaves attention unfused.
"""

from __future__ import annotations

import collections
import copy
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper


def fold_token_types(g: onnx.GraphProto) -> None:
    """Gather(token_type_embeddings, all-zero ids) -> the embedding's row 0 (broadcast in the Add)."""
    inits = {i.name: i for i in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    for n in g.node:
        if n.op_type == "Gather" and n.input[0].endswith("token_type_embeddings.weight"):
            stack = [n.input[1]]
            while stack:  # the ids come from a zero buffer through Expand / GatherElements only
                t = stack.pop()
                if t in inits:
                    assert not numpy_helper.to_array(inits[t]).any(), t
                    continue
                p = prod[t]
                assert p.op_type in ("Expand", "GatherElements"), p.op_type
                stack.append(p.input[0])
            row = n.output[0] + "_row0"
            g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(inits[n.input[0]])[0], row))
            for m in g.node:
                for k, i in enumerate(m.input):
                    if i == n.output[0]:
                        m.input[k] = row
            g.node.remove(n)
            return


def simple_mask(g: onnx.GraphProto, mask_name: str = "where") -> None:
    """The additive attention mask as (1 - mask[:, None, None, :]) * -10000 (padding only, bidirectional)."""
    prod = {o: n for n in g.node for o in n.output}
    g.node.remove(prod[mask_name])
    g.initializer.extend(
        [
            numpy_helper.from_array(np.array([1], dtype=np.int64), "mask_axes1"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "mask_axes2"),
            numpy_helper.from_array(np.array(1.0, dtype=np.float32), "mask_one"),
            numpy_helper.from_array(np.array(-10000.0, dtype=np.float32), "mask_neg"),
        ]
    )
    new = [
        helper.make_node("Unsqueeze", ["attention_mask", "mask_axes1"], ["mask_u1"], name="mask_unsqueeze1"),
        helper.make_node("Unsqueeze", ["mask_u1", "mask_axes2"], ["mask_u"], name="mask_unsqueeze2"),
        helper.make_node("Cast", ["mask_u"], ["mask_f"], to=onnx.TensorProto.FLOAT, name="mask_cast"),
        helper.make_node("Sub", ["mask_one", "mask_f"], ["mask_inv"], name="mask_sub"),
        helper.make_node("Mul", ["mask_inv", "mask_neg"], [mask_name], name="mask_mul"),
    ]
    for k, n in enumerate(new):
        g.node.insert(k, n)


def scale_as_div(g: onnx.GraphProto) -> None:
    """Mul(scores, c) before the mask Add -> Div(scores, 1/c): the pattern the attention fusion matches."""
    inits = {i.name: i for i in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = collections.defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n)
    for n in g.node:
        if n.op_type != "Mul" or n.input[1] not in inits or numpy_helper.to_array(inits[n.input[1]]).size != 1:
            continue
        p, c = prod.get(n.input[0]), consumers[n.output[0]]
        if p is not None and p.op_type == "MatMul" and len(c) == 1 and c[0].op_type == "Add":
            name = f"{n.name}_inv_scale"
            value = 1.0 / float(numpy_helper.to_array(inits[n.input[1]]))
            g.initializer.append(numpy_helper.from_array(np.array(value, dtype=np.float32), name))
            n.op_type, n.input[1] = "Div", name


def prune(model: onnx.ModelProto) -> None:
    g = model.graph
    prod = {o: n for n in g.node for o in n.output}
    live: set[int] = set()
    stack = [o.name for o in g.output]
    while stack:
        n = prod.get(stack.pop())
        if n is not None and id(n) not in live:
            live.add(id(n))
            stack.extend(n.input)
    keep = [n for n in g.node if id(n) in live]
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in g.node for i in n.input}
    inits = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)


def fuse(src: str, dst: str, attention: bool = True, skip_layer_norm: bool = False) -> None:
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import AttentionMaskFormat, FusionOptions
    from onnxruntime.transformers.onnx_model import OnnxModel

    m = onnx.load(src)
    del m.graph.value_info[:]
    g = m.graph
    fold_token_types(g)
    simple_mask(g)
    scale_as_div(g)
    prune(m)
    last = [n for n in g.node if n.op_type == "LayerNormalization" and ".encoder.layer." in n.input[1]][-1]
    prod = {o: n for n in g.node for o in n.output}
    upstream: set[int] = set()
    stack = [last.output[0]]
    while stack:
        n = prod.get(stack.pop())
        if n is not None and id(n) not in upstream:
            upstream.add(id(n))
            stack.extend(n.input)
    post = [copy.deepcopy(n) for n in g.node if id(n) not in upstream]
    enc = copy.deepcopy(m)
    del enc.graph.output[:]
    enc.graph.output.append(helper.make_tensor_value_info(last.output[0], onnx.TensorProto.FLOAT, ["b", "s", 384]))
    prune(enc)
    opts = FusionOptions("bert")
    opts.enable_attention, opts.enable_skip_layer_norm = attention, skip_layer_norm
    opts.attention_mask_format = AttentionMaskFormat.AttentionMask
    fused = optimizer.optimize_model(
        enc, model_type="bert", num_heads=12, hidden_size=384, optimization_options=opts, opt_level=0, use_gpu=False
    )
    print(fused.get_fused_operator_statistics())
    fm = fused.model
    names = {i.name for i in fm.graph.initializer}
    fm.graph.node.extend(post)
    fm.graph.initializer.extend(copy.deepcopy(i) for i in g.initializer if i.name not in names)
    del fm.graph.output[:]
    fm.graph.output.extend(g.output)
    del fm.graph.value_info[:]
    avail = {i.name for i in fm.graph.initializer} | {i.name for i in fm.graph.input} | {""}
    avail |= {o for n in fm.graph.node for o in n.output}
    missing = {i for n in fm.graph.node for i in n.input if i not in avail}
    while missing:  # encoder nodes the fusion dropped but the pooling still reads (shapes)
        add = [copy.deepcopy(prod[t]) for t in missing]
        fm.graph.node.extend(add)
        avail |= {o for n in add for o in n.output}
        missing = {i for n in add for i in n.input if i not in avail}
    prune(fm)
    if not any(o.domain == "com.microsoft" for o in fm.opset_import):
        fm.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    out = OnnxModel(fm)
    out.topological_sort()
    onnx.save(out.model, dst)
    print(collections.Counter(n.op_type for n in out.model.graph.node).most_common())


if __name__ == "__main__":
    fuse(sys.argv[1], sys.argv[2], attention="--noattn" not in sys.argv, skip_layer_norm="--sln" in sys.argv)
