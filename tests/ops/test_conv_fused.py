"""A 1x1 expansion fused with the depthwise conv that reads it (kernels/fused.py,
ops.fuse_expand_depthwise): bit for bit what the two bound layers compute one after the other,
for every stride, kernel, dilation and padding, group tail, band split (halo rows computed by
two bands), batch and thread count, in a chain and alone; pairs of other kinds are refused."""

from __future__ import annotations

import numpy as np
import pytest

import cnnperf
from cnnperf.kernels.fused import band_input_rows, expand_depthwise_blocked
from cnnperf.ops import conv_blocked
from cnnperf.ops.conv_blocked import (
    BlockedConv2d,
    ChainLayer,
    expand_depthwise_split,
    fuse_expand_depthwise,
    run_chained,
)


def _pair(rng, batch, c_in, c_mid, h, w, *, kernel=3, stride=1, padding=1, dilation=1,
          acts=("relu6", "relu6"), with_nan=False):  # fmt: skip
    """A bound expansion and depthwise conv on fresh buffers: (expand run, depthwise run,
    the depthwise output, its result when the two run one after the other)."""
    pw = BlockedConv2d(rng.standard_normal((c_mid, c_in, 1, 1)).astype(np.float32) * 0.4,
                       rng.standard_normal(c_mid).astype(np.float32), activation=acts[0],
                       input_shape=(batch, c_in, h, w))  # fmt: skip
    dw = BlockedConv2d(rng.standard_normal((c_mid, 1, kernel, kernel)).astype(np.float32),
                       rng.standard_normal(c_mid).astype(np.float32), stride=stride,
                       padding=padding, dilation=dilation, groups=c_mid, activation=acts[1],
                       input_shape=(batch, c_mid, h, w))  # fmt: skip
    x = rng.standard_normal((batch, c_in // 8, h, w, 8)).astype(np.float32)
    if with_nan:
        x[0, 0, h // 2, w // 2, 3] = np.nan
        x[-1, -1, 0, 0, 0] = np.inf
    mid = np.empty(pw.output_shape(batch), np.float32)
    out = np.empty(dw.output_shape(batch), np.float32)
    first, second = pw.bind(x, mid), dw.bind(mid, out)
    first()
    second()
    want = out.copy()
    out.fill(-7.0)
    return first, second, out, want


def _fused_runs(first, second, out, want):
    fused = fuse_expand_depthwise(first.chain_layer, second.chain_layer)
    assert fused is not None and fused.kernel == "expand_depthwise_blocked"
    run_chained([fused])()
    np.testing.assert_array_equal(out, want)
    out.fill(-7.0)
    expand_depthwise_blocked(*fused.arrays)  # the kernel alone, one prange task per task
    np.testing.assert_array_equal(out, want)
    return fused


@pytest.mark.parametrize(
    "c_mid,h,w,kw",
    [
        (8, 5, 7, {}),  # one block: a 1-block tail tile
        (16, 6, 5, {"stride": 2}),  # two blocks
        (24, 7, 7, {"padding": 0}),  # one full group, no padding
        (32, 9, 3, {"stride": 2, "padding": 0}),  # 2 + 2 blocks (3k + 1 ends in pairs)
        (40, 4, 9, {"kernel": 5, "padding": 2}),  # 3 + 2 blocks
        (56, 11, 6, {"dilation": 2, "padding": 2}),  # 3 + 2 + 2
        (24, 10, 10, {"stride": 3, "padding": 1}),
        (24, 3, 4, {"kernel": 5, "padding": (2, 1)}),  # taps past the image's bottom
        (16, 1, 13, {}),  # a single row
        (16, 13, 1, {"stride": 2}),  # a single column
    ],
)
@pytest.mark.parametrize("batch", [1, 3])
def test_the_fused_pair_is_bit_identical_to_its_two_layers(c_mid, h, w, kw, batch):
    rng = np.random.default_rng(c_mid * 100 + h * 10 + w + batch)
    _fused_runs(*_pair(rng, batch, 16, c_mid, h, w, **kw))


@pytest.mark.parametrize("scratch", [1, 3000, 6000, 1 << 20])
@pytest.mark.parametrize("stride", [1, 2])
def test_bands_with_halo_rows_computed_twice_match(monkeypatch, scratch, stride):
    """A small scratch splits the image into many bands of output rows (down to one row,
    scratch 1), each computing its taps' rows of the expansion again."""
    monkeypatch.setattr(conv_blocked, "FUSED_SCRATCH_BYTES", scratch)
    rng = np.random.default_rng(scratch + stride)
    parts = _pair(rng, 2, 24, 40, 17, 6, stride=stride)
    fused = _fused_runs(*parts)
    band_rows, oh = fused.arrays[21], fused.arrays[19]
    if scratch == 1:
        assert band_rows == 1
    elif scratch == 1 << 20:
        assert band_rows == oh
    else:
        assert 1 < band_rows < oh


def test_band_rows_and_scratch_sizes():
    # 56x56, 144 channels: whole images in one band at batch 8 (6 groups x 8 images)
    band, slot = expand_depthwise_split(8, 18, 56, 56, 56, 3, 1, 1, threads=2)
    assert band == 56 and slot == 24 * 56 * 56
    assert slot * 4 <= conv_blocked.FUSED_SCRATCH_BYTES
    # 112x112, 96 channels, stride 2: bands of 14 output rows read 29 input rows
    band, slot = expand_depthwise_split(1, 12, 112, 112, 56, 3, 2, 1, threads=2)
    assert band == 14 and slot == 24 * 112 * 29
    # one image of one group: split so that each of 2 threads has 2 tasks
    band, _ = expand_depthwise_split(1, 3, 7, 7, 7, 3, 1, 1, threads=2)
    assert band == 2
    assert band_input_rows(7, 3, 1, 1, 1, 0, 2) == (0, 3)
    assert band_input_rows(7, 3, 1, 1, 1, 5, 7) == (4, 7)
    assert band_input_rows(9, 3, 2, 1, 1, 1, 3) == (1, 6)
    assert band_input_rows(4, 3, 1, 5, 1, 0, 1) == (0, 0)  # every tap in the padding


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("acts", [(None, None), ("relu", "relu6"), ("relu6", None)])
def test_clamps_threads_and_non_finite_values_match(threads, acts):
    saved = cnnperf.get_num_threads()
    cnnperf.set_num_threads(threads)
    try:
        rng = np.random.default_rng(threads)
        _fused_runs(*_pair(rng, 2, 16, 24, 8, 8, acts=acts, with_nan=True))
    finally:
        cnnperf.set_num_threads(saved)


def test_a_fused_layer_runs_in_a_chain_between_others():
    """Expand + depthwise (fused) between a stem and a projection with a residual, the chain
    run twice on new input: every buffer as the layers one by one leave it, except the
    expansion's output, which the fused layer never writes."""
    rng = np.random.default_rng(9)

    def weight(*shape):
        return rng.standard_normal(shape).astype(np.float32) * 0.3

    stem = BlockedConv2d(weight(16, 3, 3, 3), weight(16), stride=2, activation="relu6",
                         input_layout="nchw", input_shape=(2, 3, 13, 9))  # fmt: skip
    expand = BlockedConv2d(weight(48, 16, 1, 1), weight(48), activation="relu6",
                           input_shape=(2, 16, 6, 4))  # fmt: skip
    dw = BlockedConv2d(weight(48, 1, 3, 3), weight(48), padding=1, groups=48,
                       activation="relu6", input_shape=(2, 48, 6, 4))  # fmt: skip
    project = BlockedConv2d(weight(16, 48, 1, 1), weight(16), input_shape=(2, 48, 6, 4))
    x = rng.standard_normal((2, 3, 13, 9)).astype(np.float32)
    a = np.empty((2, 2, 6, 4, 8), np.float32)
    b = np.empty((2, 6, 6, 4, 8), np.float32)
    c = np.empty((2, 6, 6, 4, 8), np.float32)
    d = np.empty((2, 2, 6, 4, 8), np.float32)
    runs = [stem.bind(x, a), expand.bind(a, b), dw.bind(b, c), project.bind(c, d, residual=a)]
    layers = [r.chain_layer for r in runs]
    fused = fuse_expand_depthwise(layers[1], layers[2])
    chained = run_chained([layers[0], fused, layers[3]])
    for _ in range(2):
        x[:] = rng.standard_normal(x.shape)
        for r in runs:
            r()
        want = [a.copy(), c.copy(), d.copy()]
        for buf in (a, b, c, d):
            buf.fill(np.nan)
        chained()
        for got, w in zip((a, c, d), want, strict=True):
            np.testing.assert_array_equal(got, w)
        assert np.isnan(b).all()  # the expansion's output stays in the threads' scratch


def test_pairs_of_other_kinds_are_not_fused():
    rng = np.random.default_rng(2)
    first, second, out, _ = _pair(rng, 1, 16, 24, 6, 6)
    pw, dw = first.chain_layer, second.chain_layer
    assert fuse_expand_depthwise(dw, pw) is None  # the wrong order
    assert fuse_expand_depthwise(pw, pw) is None  # two 1x1 convs
    assert fuse_expand_depthwise(pw, dw._replace(threads=dw.threads + 1)) is None
    # a depthwise conv that reads another buffer than the expansion's output
    other = BlockedConv2d(rng.standard_normal((24, 1, 3, 3)).astype(np.float32), None,
                          padding=1, groups=24, input_shape=(1, 24, 6, 6))  # fmt: skip
    elsewhere = other.bind(np.zeros((1, 3, 6, 6, 8), np.float32), out)
    assert fuse_expand_depthwise(pw, elsewhere.chain_layer) is None
    # an expansion with a residual
    conv = BlockedConv2d(rng.standard_normal((24, 16, 1, 1)).astype(np.float32), None,
                         input_shape=(1, 16, 6, 6))  # fmt: skip
    mid = np.empty((1, 3, 6, 6, 8), np.float32)
    with_res = conv.bind(np.zeros((1, 2, 6, 6, 8), np.float32), mid, residual=mid.copy())
    reader = other.bind(mid, out)
    assert fuse_expand_depthwise(with_res.chain_layer, reader.chain_layer) is None
    plain = conv.bind(np.zeros((1, 2, 6, 6, 8), np.float32), mid)  # the same pair, no residual
    assert isinstance(fuse_expand_depthwise(plain.chain_layer, reader.chain_layer), ChainLayer)
