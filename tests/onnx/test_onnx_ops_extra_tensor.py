"""Per-op conformance against ONNX Runtime for data movement, shape glue, reductions, Pad,
Resize and Upsample, in every attribute form opsets 7 to 21 use.

Data movement (Slice, Gather, Split, Tile, Pad, SpaceToDepth/DepthToSpace, nearest Resize,
Reshape & co) must match exactly. Linear Resize blends in float32 in another order than ORT
(separable passes) but stays within the element-wise tolerance (measured: 8e-7 absolute at
most on unit-normal data). Reductions: 1e-5 relative to the largest output (we accumulate in
float64, ORT in float32).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_onnx_ops_extra import X4, check, graph_model, node_model, rand

import cnnperf.onnx

RNG = np.random.default_rng(7)
I64 = np.int64
BIG = 2**63 - 1


def ints(*v):
    return np.array(v, I64)


# -- Slice -----------------------------------------------------------------------------------

SLICE_CASES = [  # starts, ends, axes, steps
    ([1, 2], [5, -1], [2, 3], None),
    ([0], [BIG], [1], [2]),
    ([-1], [-BIG], [3], [-1]),  # reverse the whole axis
    ([7, -2], [1, 0], [2, 3], [-2, -3]),
    ([-100], [100], [-1], None),  # clamped both ends
    ([3, 1, 0], [4, 5, 2], None, None),  # axes omitted: 0, 1, 2
    ([2], [2], [1], None),  # empty
]


@pytest.mark.parametrize("opset", [10, 11, 13])
@pytest.mark.parametrize("starts,ends,axes,steps", SLICE_CASES)
def test_slice_runtime_inputs(starts, ends, axes, steps, opset):
    consts = [
        ("s", ints(*starts)),
        ("e", ints(*ends)),
        ("a", None if axes is None else ints(*axes)),
        ("st", None if steps is None else ints(*steps)),
    ]
    if axes is None and steps is not None:
        raise AssertionError("bad case")
    model = node_model("Slice", X4, {}, consts, opset)
    assert [n.op for n in cnnperf.onnx.load(model).graph.nodes] == ["slice"]
    check(model, rand(*X4), "exact")


@pytest.mark.parametrize("opset", [7, 9])
def test_slice_attributes_before_opset10(opset):
    for attrs in (
        {"starts": [1, 0], "ends": [3, BIG], "axes": [1, 3]},
        {"starts": [0, 0, -4], "ends": [1, 3, -1]},
    ):
        check(node_model("Slice", X4, attrs, opset=opset), rand(*X4), "exact")


def test_slice_dynamic_batch_and_folded_shape_slice():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Slice", ["s", "b", "e"], ["hw"]),  # folded: (9, 8)
        helper.make_node("Slice", ["x", "b1", "e1", "ax"], ["t"]),
        helper.make_node("Resize", ["t", "", "", "sz"], ["y"], mode="nearest"),
    ]
    inits = {"b": ints(2), "e": ints(4), "b1": ints(1, -5), "e1": ints(5, BIG), "ax": ints(1, 2)}
    nodes.insert(2, helper.make_node("Concat", ["nc", "hw"], ["sz"], axis=0))
    nodes.insert(2, helper.make_node("Slice", ["s", "z", "two"], ["nc"]))
    inits.update(z=ints(0), two=ints(2))
    model = graph_model(nodes, {"x": ("n", 6, 9, 8)}, ["y"], inits)
    for n in (1, 3):
        check(model, rand(n, 6, 9, 8), "exact")


# -- Gather ----------------------------------------------------------------------------------

GATHER_CASES = [
    (0, np.array(1, I64)),
    (1, ints(0, 5, -1, 2)),
    (2, np.array([[0, 1], [-1, 3]], I64)),
    (-1, np.array(-2, np.int32)),
    (3, ints(7, 7, 0)),
]


@pytest.mark.parametrize(
    "axis,idx,opset",
    # Negative indices are defined from Gather-11 on.
    [(a, i, o) for a, i in GATHER_CASES for o in (7, 11, 13) if o >= 11 or i.min() >= 0],
)
def test_gather(axis, idx, opset):
    model = node_model("Gather", X4, {"axis": axis}, [("i", idx)], opset)
    check(model, rand(*X4), "exact")


def test_gather_on_dynamic_batch_value():
    model = node_model("Gather", ("n", 6, 9, 8), {"axis": 1}, [("i", ints(3, 1))])
    check(model, rand(3, 6, 9, 8), "exact")


# -- Split -----------------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [7, 11, 13, 18])
@pytest.mark.parametrize(
    "axis,split,n", [(1, [2, 4], 2), (1, None, 3), (-1, [1, 5, 2], 3), (2, None, 1)]
)
def test_split(axis, split, n, opset):
    if opset < 11 and axis < 0:
        axis += 4
    attrs, consts = {"axis": axis}, []
    if split is not None and opset < 13:
        attrs["split"] = split
    elif split is not None:
        consts = [("sp", ints(*split))]
    elif opset >= 18:
        attrs["num_outputs"] = n
    check(node_model("Split", X4, attrs, consts, opset, n_out=n), rand(*X4), "exact")


def test_split_uneven_num_outputs_opset18():
    for axis, n in ((3, 3), (2, 4)):  # 8 -> 3, 3, 2; 9 -> 3, 3, 3, 0 (parts of ceil(dim / n))
        model = node_model("Split", X4, {"axis": axis, "num_outputs": n}, opset=18, n_out=n)
        check(model, rand(*X4), "exact")


# -- Tile, SpaceToDepth, DepthToSpace --------------------------------------------------------


@pytest.mark.parametrize("opset", [7, 13])
@pytest.mark.parametrize("reps", [(1, 1, 2, 3), (2, 1, 1, 1), (1, 3, 1, 1)])
def test_tile(reps, opset):
    check(node_model("Tile", X4, {}, [("r", ints(*reps))], opset), rand(*X4), "exact")


@pytest.mark.parametrize("opset", [7, 13])
@pytest.mark.parametrize("b", [1, 2, 3])
def test_space_to_depth(b, opset):
    shape = (2, 3, 6, 12)
    check(node_model("SpaceToDepth", shape, {"blocksize": b}, opset=opset), rand(*shape), "exact")


@pytest.mark.parametrize(
    "mode,opset", [(None, 7), ("DCR", 11), ("CRD", 11), ("CRD", 13), (None, 13)]
)
@pytest.mark.parametrize("b", [2, 3])
def test_depth_to_space(mode, opset, b):
    shape = (2, 2 * b * b, 4, 3)
    attrs = {"blocksize": b, **({} if mode is None else {"mode": mode})}
    check(node_model("DepthToSpace", shape, attrs, opset=opset), rand(*shape), "exact")


# -- Reductions ------------------------------------------------------------------------------

REDUCE_CASES = [([2, 3], 1), ([1], 0), ([-1], 1), (None, 1), (None, 0), ([0, 2], 0)]


@pytest.mark.parametrize("op,opsets", [("ReduceMean", (7, 13, 18)), ("ReduceSum", (7, 11, 13))])
@pytest.mark.parametrize("axes,keepdims", REDUCE_CASES)
def test_reduce(op, opsets, axes, keepdims):
    input_from = 18 if op == "ReduceMean" else 13
    for opset in opsets:
        attrs, consts = {"keepdims": keepdims}, []
        if axes is not None and opset < input_from:
            attrs["axes"] = axes
        elif axes is not None:
            consts = [("a", ints(*axes))]
        model = node_model(op, X4, attrs, consts, opset)
        check(model, rand(*X4) + 0.5, "rel", 1e-5)


@pytest.mark.parametrize("op,opset", [("ReduceMean", 18), ("ReduceSum", 13)])
def test_reduce_noop_with_empty_axes(op, opset):
    model = node_model(op, X4, {"noop_with_empty_axes": 1}, opset=opset)
    check(model, rand(*X4), "exact")
    empty = node_model(op, X4, {"noop_with_empty_axes": 0}, [("a", np.zeros(0, I64))], opset)
    check(empty, rand(*X4), "rel", 1e-5)


# -- Pad -------------------------------------------------------------------------------------

PAD_CASES = [  # pads in ONNX order (begins then ends), mode
    ([0, 0, 1, 2, 0, 0, 3, 0], "constant"),
    ([0, 0, 2, 1, 0, 0, 1, 3], "reflect"),
    ([0, 0, 2, 1, 0, 0, 1, 3], "edge"),
    ([0, 1, 0, 0, 0, 2, 0, 1], "edge"),
    ([0, 0, -1, 2, 0, 0, 1, -2], "constant"),  # negative pads crop
    ([1, 0, 0, 0, 0, 0, 0, 1], "constant"),
]


@pytest.mark.parametrize("opset", [7, 11, 13, 18])
@pytest.mark.parametrize("pads,mode", PAD_CASES)
def test_pad(pads, mode, opset):
    if opset < 11:
        model = node_model("Pad", X4, {"pads": pads, "mode": mode, "value": 1.5}, opset=opset)
    else:
        model = node_model(
            "Pad", X4, {"mode": mode}, [("p", ints(*pads)), ("v", np.array(1.5, np.float32))], opset
        )
    check(model, rand(*X4), "exact")


def test_pad_constant_value_absent_and_axes_input():
    check(node_model("Pad", X4, {}, [("p", ints(0, 0, 1, 1, 0, 0, 2, 0))], 13), rand(*X4), "exact")
    consts = [("p", ints(1, 2, 3, 0)), ("v", None), ("ax", ints(-1, 2))]
    check(node_model("Pad", X4, {"mode": "reflect"}, consts, 18), rand(*X4), "exact")


def test_pad_wrap_opset19():
    consts = [("p", ints(0, 0, 2, 3, 0, 0, 1, 4))]
    check(node_model("Pad", X4, {"mode": "wrap"}, consts, 19), rand(*X4), "exact")


# -- Resize / Upsample -----------------------------------------------------------------------

COORDS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
RESIZE_SCALES = [(2.0, 2.0), (0.5, 0.5), (1.5, 3.0), (0.6, 1.7), (1.0, 2.5), (3.0, 1 / 3)]
X_R = (2, 3, 6, 9)


def _resize_model(mode, coord, scales=None, sizes=None, opset=13, **attrs):
    consts = [
        ("roi", None if opset >= 13 else np.zeros(0, np.float32)),
        ("sc", None if scales is None else np.array([1, 1, *scales], np.float32)),
        ("sz", None if sizes is None else ints(*sizes)),
    ]
    if opset < 13 and scales is None:
        consts[1] = ("sc", np.zeros(0, np.float32))
    attrs = {"mode": mode, "coordinate_transformation_mode": coord, **attrs}
    return node_model("Resize", X_R, attrs, consts, opset)


def _check_resize(model, mode):
    check(model, rand(*X_R), "exact" if mode == "nearest" else "elementwise")


@pytest.mark.parametrize("scales", RESIZE_SCALES)
@pytest.mark.parametrize("coord", COORDS)
@pytest.mark.parametrize("nearest_mode", NEAREST)
def test_resize_nearest_scales(scales, coord, nearest_mode):
    model = _resize_model("nearest", coord, scales, nearest_mode=nearest_mode)
    _check_resize(model, "nearest")


@pytest.mark.parametrize("scales", RESIZE_SCALES)
@pytest.mark.parametrize("coord", COORDS)
def test_resize_linear_scales(scales, coord):
    _check_resize(_resize_model("linear", coord, scales), "linear")


@pytest.mark.parametrize("sizes", [(2, 3, 12, 18), (2, 3, 4, 5), (2, 3, 1, 1), (2, 3, 7, 20)])
@pytest.mark.parametrize(
    "coord,mode",  # tf_half_pixel_for_nn is defined for nearest only
    [(c, m) for c in COORDS for m in ("nearest", "linear")] + [("tf_half_pixel_for_nn", "nearest")],
)
@pytest.mark.parametrize("opset", [11, 13])
def test_resize_sizes(sizes, coord, mode, opset):
    _check_resize(_resize_model(mode, coord, sizes=sizes, opset=opset), mode)


@pytest.mark.parametrize("opset", [18, 19])
@pytest.mark.parametrize("policy", ["stretch", "not_larger", "not_smaller"])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_axes_and_aspect_policy(policy, mode, opset):
    attrs = {"mode": mode, "axes": [2, 3], "keep_aspect_ratio_policy": policy}
    model = node_model(
        "Resize", X_R, attrs, [("roi", None), ("sc", None), ("sz", ints(10, 12))], opset
    )
    _check_resize(model, mode)
    attrs = {"mode": mode, "axes": [3], "coordinate_transformation_mode": "align_corners"}
    model = node_model("Resize", X_R, attrs, [("roi", None), ("sc", np.array([1.5], "f4"))], opset)
    _check_resize(model, mode)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [(2.0, 2.0), (1.7, 0.6), (3.0, 1.0)])
def test_resize_half_pixel_symmetric_opset19(mode, scales):
    _check_resize(_resize_model(mode, "half_pixel_symmetric", scales, opset=19), mode)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [(2.0, 2.0), (2.0, 3.0), (0.5, 0.5), (1.5, 0.7)])
def test_resize_opset10(mode, scales):
    model = node_model(
        "Resize", X_R, {"mode": mode}, [("sc", np.array([1, 1, *scales], np.float32))], 10
    )
    _check_resize(model, mode)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("opset", [7, 9])
@pytest.mark.parametrize("scales", [(2.0, 2.0), (3.0, 1.5)])
def test_upsample(mode, opset, scales):
    full = [1.0, 1.0, *scales]
    if opset < 9:
        model = node_model("Upsample", X_R, {"mode": mode, "scales": full}, opset=opset)
    else:
        model = node_model("Upsample", X_R, {"mode": mode}, [("sc", np.array(full, "f4"))], 9)
    _check_resize(model, mode)


def test_resize_pytorch_export_dynamic_batch():
    """F.interpolate(scale_factor=2) as PyTorch exports it, with a dynamic batch."""
    model = node_model(
        "Resize",
        ("n", 3, 6, 9),
        {
            "mode": "nearest",
            "coordinate_transformation_mode": "asymmetric",
            "nearest_mode": "floor",
        },
        [("roi", None), ("sc", np.array([1, 1, 2, 2], np.float32))],
    )
    for n in (1, 2):
        check(model, rand(n, 3, 6, 9), "exact")


# -- Glue ops across opsets ------------------------------------------------------------------


@pytest.mark.parametrize("opset", [7, 11, 13])
def test_concat_flatten_transpose_opsets(opset):
    axis = -1 if opset >= 11 else 3
    check(
        node_model("Concat", X4, {"axis": axis}, [("c", rand(2, 6, 9, 3))], opset),
        rand(*X4),
        "exact",
    )
    check(node_model("Flatten", X4, {"axis": 2}, opset=opset), rand(*X4), "exact")
    check(node_model("Transpose", X4, {"perm": [0, 3, 1, 2]}, opset=opset), rand(*X4), "exact")


@pytest.mark.parametrize("opset", [7, 13])
def test_squeeze_unsqueeze_attribute_forms(opset):
    if opset < 13:
        sq = node_model("Squeeze", (2, 1, 9, 1), {"axes": [1, 3]}, opset=opset)
        un = node_model("Unsqueeze", (2, 9), {"axes": [0, 3]}, opset=opset)
    else:
        sq = node_model("Squeeze", (2, 1, 9, 1), {}, [("a", ints(1, -1))], opset)
        un = node_model("Unsqueeze", (2, 9), {}, [("a", ints(0, -1))], opset)
    check(sq, rand(2, 1, 9, 1), "exact")
    check(un, rand(2, 9), "exact")


@pytest.mark.parametrize(
    "shape,allowzero,opset",
    [([0, -1], 0, 7), ([0, 3, 2, -1], 0, 13), ([-1, 0, 8], 0, 14), ([2, 6, 72], 1, 14)],
)
def test_reshape_forms(shape, allowzero, opset):
    attrs = {"allowzero": allowzero} if opset >= 14 else {}
    check(node_model("Reshape", X4, attrs, [("s", ints(*shape))], opset), rand(*X4), "exact")


def test_shape_cast_constant_constant_of_shape():
    """Shape (opset 15 start/end) -> Cast -> ConstantOfShape -> Add, with Constant forms."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], start=-2, end=9),  # (9, 8)
        helper.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["sf"], ["si"], to=TensorProto.INT64),
        helper.make_node(
            "ConstantOfShape",
            ["si"],
            ["c"],
            value=numpy_helper.from_array(np.array([0.25], np.float32)),
        ),
        helper.make_node("Constant", [], ["k1"], value_float=2.0),
        helper.make_node(
            "Constant", [], ["k2"], value_floats=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
        ),
        helper.make_node("Add", ["x", "c"], ["a"]),
        helper.make_node("Mul", ["a", "k1"], ["b"]),
        helper.make_node("Cast", ["b"], ["b32"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["b32", "k2"], ["y"]),
    ]
    model = graph_model(nodes, {"x": ("n", 6, 9, 8)}, ["y"], opset=15)
    compiled = cnnperf.onnx.load(model)
    assert [n.op for n in compiled.graph.nodes] == ["add", "mul", "sub"]
    check(model, rand(3, 6, 9, 8))
