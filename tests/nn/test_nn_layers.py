"""Every layer module against its torch.nn twin: weights copied both ways, forward, backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_rel_close

import cnnperf
from cnnperf import nn
from cnnperf.autograd import manual_seed

T = torch.nn
TOL = 1e-5  # float32, relative to max |torch|, as the autograd parity tests

# (id, our module factory, torch module factory, input shape)
CASES = [
    ("conv_3x3", lambda: nn.Conv2d(3, 4, 3, padding=1), lambda: T.Conv2d(3, 4, 3, padding=1),
     (2, 3, 7, 6)),
    ("conv_groups_stride", lambda: nn.Conv2d(4, 6, 3, 2, (1, 2), groups=2, bias=False),
     lambda: T.Conv2d(4, 6, 3, 2, (1, 2), groups=2, bias=False), (2, 4, 9, 8)),
    ("conv_same_dilated", lambda: nn.Conv2d(2, 3, 3, padding="same", dilation=2),
     lambda: T.Conv2d(2, 3, 3, padding="same", dilation=2), (1, 2, 8, 7)),
    ("conv_valid_rect", lambda: nn.Conv2d(2, 3, (2, 3), padding="valid"),
     lambda: T.Conv2d(2, 3, (2, 3), padding="valid"), (2, 2, 5, 6)),
    ("conv_reflect", lambda: nn.Conv2d(2, 3, 3, padding=(1, 2), padding_mode="reflect"),
     lambda: T.Conv2d(2, 3, 3, padding=(1, 2), padding_mode="reflect"), (2, 2, 6, 6)),
    ("conv_replicate_same", lambda: nn.Conv2d(2, 2, 4, padding="same", padding_mode="replicate"),
     lambda: T.Conv2d(2, 2, 4, padding="same", padding_mode="replicate"), (1, 2, 7, 7)),
    ("convT_stride2", lambda: nn.ConvTranspose2d(4, 2, 3, 2, 1, output_padding=1),
     lambda: T.ConvTranspose2d(4, 2, 3, 2, 1, output_padding=1), (2, 4, 4, 5)),
    ("convT_groups_dil", lambda: nn.ConvTranspose2d(4, 6, 2, groups=2, dilation=2, bias=False),
     lambda: T.ConvTranspose2d(4, 6, 2, groups=2, dilation=2, bias=False), (1, 4, 3, 3)),
    ("maxpool_ceil", lambda: nn.MaxPool2d(3, 2, 1, ceil_mode=True),
     lambda: T.MaxPool2d(3, 2, 1, ceil_mode=True), (2, 3, 8, 7)),
    ("maxpool_dilated", lambda: nn.MaxPool2d(2, 1, dilation=2),
     lambda: T.MaxPool2d(2, 1, dilation=2), (1, 2, 6, 6)),
    ("avgpool_nopad_count", lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False),
     lambda: T.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 3, 7, 8)),
    ("avgpool_default", lambda: nn.AvgPool2d(2), lambda: T.AvgPool2d(2), (1, 2, 6, 6)),
    ("adaptive_3x2", lambda: nn.AdaptiveAvgPool2d((3, 2)), lambda: T.AdaptiveAvgPool2d((3, 2)),
     (2, 3, 7, 5)),
    ("adaptive_none", lambda: nn.AdaptiveAvgPool2d((None, 2)),
     lambda: T.AdaptiveAvgPool2d((None, 2)), (1, 2, 5, 6)),
    ("bn2d", lambda: nn.BatchNorm2d(3), lambda: T.BatchNorm2d(3), (4, 3, 5, 5)),
    ("bn2d_no_affine", lambda: nn.BatchNorm2d(3, affine=False, momentum=0.3),
     lambda: T.BatchNorm2d(3, affine=False, momentum=0.3), (2, 3, 4, 4)),
    ("bn2d_no_stats", lambda: nn.BatchNorm2d(2, track_running_stats=False),
     lambda: T.BatchNorm2d(2, track_running_stats=False), (3, 2, 3, 3)),
    ("bn2d_eval", lambda: nn.BatchNorm2d(3).eval(), lambda: T.BatchNorm2d(3).eval(),
     (2, 3, 4, 4)),
    ("bn2d_no_stats_eval", lambda: nn.BatchNorm2d(3, track_running_stats=False).eval(),
     lambda: T.BatchNorm2d(3, track_running_stats=False).eval(), (2, 3, 4, 4)),
    ("bn1d", lambda: nn.BatchNorm1d(5, eps=1e-3), lambda: T.BatchNorm1d(5, eps=1e-3), (6, 5)),
    ("linear", lambda: nn.Linear(5, 3), lambda: T.Linear(5, 3), (4, 5)),
    ("linear_3d_nobias", lambda: nn.Linear(5, 2, bias=False),
     lambda: T.Linear(5, 2, bias=False), (2, 3, 5)),
    ("flatten", lambda: nn.Flatten(), lambda: T.Flatten(), (2, 3, 4, 2)),
    ("flatten_0_2", lambda: nn.Flatten(0, 2), lambda: T.Flatten(0, 2), (2, 3, 4, 2)),
    ("identity", lambda: nn.Identity(3, x=1), lambda: T.Identity(3, x=1), (2, 3)),
    ("relu", lambda: nn.ReLU(), lambda: T.ReLU(), (3, 7)),
    ("leaky_relu", lambda: nn.LeakyReLU(0.2), lambda: T.LeakyReLU(0.2), (3, 7)),
    ("relu6", lambda: nn.ReLU6(), lambda: T.ReLU6(), (3, 7)),
    ("elu", lambda: nn.ELU(0.7), lambda: T.ELU(0.7), (3, 7)),
    ("hardtanh", lambda: nn.Hardtanh(-0.5, 2.0), lambda: T.Hardtanh(-0.5, 2.0), (3, 7)),
    ("sigmoid", lambda: nn.Sigmoid(), lambda: T.Sigmoid(), (3, 7)),
    ("hardsigmoid", lambda: nn.Hardsigmoid(), lambda: T.Hardsigmoid(), (3, 7)),
    ("tanh", lambda: nn.Tanh(), lambda: T.Tanh(), (3, 7)),
    ("gelu", lambda: nn.GELU(), lambda: T.GELU(), (3, 7)),
    ("gelu_tanh", lambda: nn.GELU("tanh"), lambda: T.GELU("tanh"), (3, 7)),
    ("silu", lambda: nn.SiLU(), lambda: T.SiLU(), (3, 7)),
    ("hardswish", lambda: nn.Hardswish(), lambda: T.Hardswish(), (3, 7)),
    ("softmax", lambda: nn.Softmax(dim=1), lambda: T.Softmax(dim=1), (2, 5, 3)),
    ("log_softmax", lambda: nn.LogSoftmax(dim=-1), lambda: T.LogSoftmax(dim=-1), (2, 5)),
    ("dropout_eval", lambda: nn.Dropout(0.3).eval(), lambda: T.Dropout(0.3).eval(), (4, 6)),
]  # fmt: skip


def _randomize_torch(module: torch.nn.Module, seed: int) -> None:
    """Non-default values in every torch parameter and float buffer (the other direction)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if t.dtype.is_floating_point:
                new = torch.rand(t.shape, generator=g) + 0.5 if "var" in name else None
                t.copy_(new if new is not None else torch.randn(t.shape, generator=g))
            else:
                t.fill_(7)


def _to_torch_state(sd: dict) -> dict:
    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in sd.items()}


def _compare(ours, theirs, x: np.ndarray, what: str) -> None:
    """Forward, backward (input and parameter gradients) and buffers after the call."""
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    xo = cnnperf.tensor(x, requires_grad=True)
    y, yt = ours(xo), theirs(xt)
    assert isinstance(y, cnnperf.Tensor), type(y)
    assert_rel_close(y.data, yt.detach().numpy(), TOL, f"{what} forward")
    g = np.random.default_rng(5).standard_normal(y.shape).astype(np.float32)
    y.backward(g)
    yt.backward(torch.from_numpy(g))
    assert_rel_close(xo.grad, xt.grad.numpy(), TOL, f"{what} grad input")
    tparams = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert_rel_close(p.grad, tparams[name].grad.numpy(), TOL, f"{what} grad {name}")
    tsd = theirs.state_dict()
    for key, value in ours.state_dict().items():  # running statistics after the forward
        if value.dtype.kind == "f":
            assert_rel_close(value, tsd[key].numpy(), TOL, f"{what} {key}")
        else:
            assert value.dtype == np.int64 and value == tsd[key].item(), (key, value)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_layer_matches_torch_with_weights_copied_both_ways(case):
    name, make_ours, make_theirs, shape = case
    manual_seed(3)
    ours, theirs = make_ours(), make_theirs()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    # torch < 2.5 prints no "bias=" for BatchNorm: compare without it
    assert repr(ours).replace(", bias=True, track", ", track") == repr(theirs).replace(
        ", bias=True, track", ", track"
    )
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    # cnnperf -> torch
    theirs.load_state_dict(_to_torch_state(ours.state_dict()))
    _compare(ours, theirs, x, name + " (ours->torch)")
    # torch -> cnnperf, from values neither side's init would give
    _randomize_torch(theirs, seed=11)
    ours.zero_grad()
    theirs.zero_grad()
    result = ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    assert result == ([], [])
    _compare(ours, theirs, x, name + " (torch->ours)")


def test_ndarray_and_tensor_inputs_give_the_same_output():
    manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    x = np.random.default_rng(1).standard_normal((2, 2, 6, 6)).astype(np.float32)
    y_array, y_tensor = model(x), model(cnnperf.tensor(x))
    assert isinstance(y_array, cnnperf.Tensor)
    np.testing.assert_array_equal(y_array.data, y_tensor.data)


def test_conv_transpose_output_size_like_torch():
    manual_seed(0)
    ours = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    theirs = T.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    theirs.load_state_dict(_to_torch_state(ours.state_dict()))
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    y = ours(x, output_size=(8, 8))
    yt = theirs(torch.from_numpy(x), output_size=[8, 8])
    assert y.shape == (1, 3, 8, 8)
    assert_rel_close(y.data, yt.detach().numpy(), TOL, "output_size")
    with pytest.raises(ValueError, match=r"requested an output size of \[10, 8\].*\[7, 7\]"):
        ours(x, output_size=(10, 8))


def test_maxpool_return_indices_like_torch():
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6)).astype(np.float32)
    y, idx = nn.MaxPool2d(2, return_indices=True)(x)
    yt, idxt = T.MaxPool2d(2, return_indices=True)(torch.from_numpy(x))
    np.testing.assert_array_equal(y.data, yt.numpy())
    np.testing.assert_array_equal(idx, idxt.numpy())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_modules_like_torch(reduction):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((6, 4)).astype(np.float32)
    target = rng.integers(0, 4, 6)
    weight = rng.uniform(0.5, 2, 4).astype(np.float32)
    ours = nn.CrossEntropyLoss(weight, reduction=reduction, label_smoothing=0.1)
    theirs = T.CrossEntropyLoss(torch.from_numpy(weight), reduction=reduction, label_smoothing=0.1)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]
    x, xt = cnnperf.tensor(logits, requires_grad=True), torch.tensor(logits, requires_grad=True)
    loss, lt = ours(x, target), theirs(xt, torch.from_numpy(target))
    assert_rel_close(loss.data, lt.detach().numpy(), TOL, "cross_entropy")
    g = np.ones(loss.shape, np.float32)
    loss.backward(g)
    lt.backward(torch.from_numpy(g))
    assert_rel_close(x.grad, xt.grad.numpy(), TOL, "cross_entropy grad")
    pred = rng.standard_normal((3, 5)).astype(np.float32)
    goal = rng.standard_normal((3, 5)).astype(np.float32)
    mse = nn.MSELoss(reduction)(pred, goal)
    mse_t = T.MSELoss(reduction=reduction)(torch.from_numpy(pred), torch.from_numpy(goal))
    assert_rel_close(mse.data, mse_t.numpy(), TOL, "mse")
    assert list(nn.CrossEntropyLoss().state_dict()) == []


# ----------------------------------------------------------------------------------------------
# train / eval behaviour


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_train_updates_stats_and_eval_uses_them_like_torch(momentum):
    ours, theirs = nn.BatchNorm2d(3, momentum=momentum), T.BatchNorm2d(3, momentum=momentum)
    rng = np.random.default_rng(0)
    for _ in range(3):  # training: batch statistics, running statistics updated in place
        x = (rng.standard_normal((4, 3, 5, 5)) * 3 + 1).astype(np.float32)
        y, yt = ours(x), theirs(torch.from_numpy(x))
        assert_rel_close(y.data, yt.detach().numpy(), TOL, "train forward")
        per_channel = y.data.transpose(1, 0, 2, 3).reshape(3, -1)
        assert np.abs(per_channel.mean(1)).max() < 1e-5  # normalised with the batch's stats
    assert ours.num_batches_tracked.dtype == np.int64 and ours.num_batches_tracked.shape == ()
    assert int(ours.num_batches_tracked) == 3
    assert_rel_close(ours.running_mean, theirs.running_mean.numpy(), TOL, "running_mean")
    assert_rel_close(ours.running_var, theirs.running_var.numpy(), TOL, "running_var")
    before = ours.state_dict()
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    y, yt = ours(x), theirs(torch.from_numpy(x))
    assert_rel_close(y.data, yt.detach().numpy(), TOL, "eval forward")
    expected = (x - ours.running_mean[:, None, None]) / np.sqrt(
        ours.running_var[:, None, None] + ours.eps
    )
    assert_rel_close(y.data, expected, 1e-5, "eval uses the running statistics")
    for key, value in ours.state_dict().items():  # evaluation changes nothing
        np.testing.assert_array_equal(value, before[key])


def test_batchnorm_errors_name_the_input():
    bn = nn.BatchNorm2d(3)
    with pytest.raises(ValueError, match=r"expected 4D input \(got 2D input of shape \(2, 3\)\)"):
        bn(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(np.zeros((1, 3, 1, 1), np.float32))
    assert int(bn.num_batches_tracked) == 0  # a failed forward is not counted


def test_dropout_train_and_eval():
    d = nn.Dropout(0.25)
    x = cnnperf.tensor(np.ones((200, 50), np.float32), requires_grad=True)
    manual_seed(7)
    y = d(x)
    kept = y.data != 0
    assert 0.7 < kept.mean() < 0.8  # 10 000 draws: p=0.25 dropped
    np.testing.assert_allclose(y.data[kept], 1 / 0.75, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, kept / np.float32(0.75))
    manual_seed(7)
    np.testing.assert_array_equal(d(x).data, y.data)  # the global seed reproduces the mask
    d.eval()
    np.testing.assert_array_equal(d(x).data, x.data)
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        nn.Dropout(1.5)


# ----------------------------------------------------------------------------------------------
# default initialisation (distribution, not values)


@pytest.mark.parametrize(
    "make_ours, make_theirs, fan_in",
    [
        (lambda: nn.Conv2d(16, 32, 3), lambda: T.Conv2d(16, 32, 3), 16 * 9),
        (lambda: nn.Conv2d(16, 32, 3, groups=4), lambda: T.Conv2d(16, 32, 3, groups=4), 4 * 9),
        (lambda: nn.ConvTranspose2d(24, 8, 3), lambda: T.ConvTranspose2d(24, 8, 3), 8 * 9),
        (lambda: nn.Linear(200, 100), lambda: T.Linear(200, 100), 200),
    ],
    ids=["conv", "conv_groups", "conv_transpose", "linear"],
)
def test_default_init_is_pytorch_uniform_bound(make_ours, make_theirs, fan_in):
    manual_seed(0)
    ours, theirs = make_ours(), make_theirs()
    bound = 1 / np.sqrt(fan_in)
    for name in ("weight", "bias"):
        w, wt = getattr(ours, name).data, getattr(theirs, name).detach().numpy()
        assert w.shape == wt.shape and w.dtype == np.float32
        for values in (w, wt):  # both inside the same bound
            assert np.abs(values).max() <= bound
        if name == "weight":  # enough samples to fill it: U(-b, b), std b/sqrt(3)
            for values in (w, wt):
                assert values.max() > 0.95 * bound and values.min() < -0.95 * bound
            assert abs(w.mean()) < 0.05 * bound
            assert abs(w.std() / (bound / np.sqrt(3)) - 1) < 0.05


def test_batchnorm_default_init_and_buffers():
    bn, bt = nn.BatchNorm2d(4), T.BatchNorm2d(4)
    for key, value in bn.state_dict().items():
        ref = bt.state_dict()[key].numpy()
        assert value.dtype == ref.dtype and value.shape == ref.shape, key
        np.testing.assert_array_equal(value, ref)


def test_init_is_seeded_by_manual_seed_or_generator():
    manual_seed(5)
    a = nn.Conv2d(3, 4, 3).weight.data.copy()
    manual_seed(5)
    b = nn.Conv2d(3, 4, 3).weight.data.copy()
    c = nn.Conv2d(3, 4, 3).weight.data.copy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)
    g1, g2 = nn.Linear(4, 4, generator=9), nn.Linear(4, 4, generator=np.random.default_rng(9))
    np.testing.assert_array_equal(g1.weight.data, g2.weight.data)
    assert nn.Linear(2, 2, dtype=np.float64).weight.dtype == np.float64


def test_layer_argument_errors_name_the_values():
    with pytest.raises(
        ValueError, match="in_channels must be divisible by groups, got in_channels=3"
    ):
        nn.Conv2d(3, 6, 3, groups=2)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        nn.Conv2d(3, 6, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        nn.Conv2d(3, 6, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="Only 'zeros' padding mode"):
        nn.ConvTranspose2d(3, 6, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="kernel_size must be an int or a pair of ints, got 'x'"):
        nn.MaxPool2d("x")
    with pytest.raises(ValueError, match="in_features must be a positive integer, got -1"):
        nn.Linear(-1, 2)
    with pytest.raises(ValueError, match="dtype must be float32 or float64, got int32"):
        nn.Linear(2, 2, dtype=np.int32)
    with pytest.raises(ValueError, match="CPU only"):
        nn.Linear(2, 2, device="cuda")
    with pytest.raises(ValueError, match="Given groups=1, weight of shape"):
        nn.Conv2d(3, 2, 3)(np.zeros((1, 4, 5, 5), np.float32))
