"""Checks of a backward pass written by hand: bilinear sampling as a torch.autograd.Function (RoIAlign, Sec. 3).

RoIAlign's output is a weighted sum of feature pixels. A point (y, x) reads its 4 neighbours, with
y0 = floor(y), x0 = floor(x), ly = y - y0, lx = x - x0:

    (y0, x0): (1 - ly)(1 - lx)    (y0, x0 + 1): (1 - ly) lx    (y0 + 1, x0): ly (1 - lx)    (y0 + 1, x0 + 1): ly lx

The backward pass sends the output's gradient back along the same weights: pixel (i, j) receives
weight * grad_out[k] from every point k that reads it, summed (two points in one cell share all four
pixels). That is RoIAlign's backward; the RoIs themselves get no gradient in Mask R-CNN.

The function checked, bilinear_sample(fmap, ys, xs), returns YourFunction.apply(fmap, ys, xs):
fmap (H, W) float, ys, xs (n,) with 0 <= y < H - 1 and 0 <= x < W - 1 (the 4 neighbours inside the
map) -> (n,) in fmap's dtype; backward returns the gradient of fmap, and None for ys and xs.

The expected gradients come from autograd on the same sampling written with torch operations
(`bilinear_ops`); torch.autograd.gradcheck in float64 compares your backward with finite differences
of your forward. The reference and the known mistakes are autograd.Functions with loops.

Shape glossary:
  H, W: feature map size; n: sampling points
"""
from __future__ import annotations

import math
import types

import torch

from .core import Component, Unusable, mistake


def _corners(y: float, x: float):
    """The 4 neighbours of (y, x) and their bilinear weights: [(i, j, weight), ...]."""
    y0, x0 = math.floor(y), math.floor(x)
    ly, lx = y - y0, x - x0
    return [(y0, x0, (1 - ly) * (1 - lx)), (y0, x0 + 1, (1 - ly) * lx), (y0 + 1, x0, ly * (1 - lx)),
            (y0 + 1, x0 + 1, ly * lx)]


def sample_function(*, weights="right", accumulate=True):
    """bilinear_sample as an autograd.Function written with loops; the keywords switch on known mistakes
    in its backward ("mirrored": each pixel gets the opposite corner's weight; "swapped": x and y swapped)."""
    class BilinearSample(torch.autograd.Function):
        @staticmethod
        def forward(ctx, fmap, ys, xs):
            ctx.save_for_backward(ys, xs)
            ctx.size = tuple(fmap.shape)
            f = fmap.tolist()
            return torch.tensor([sum(w * f[i][j] for i, j, w in _corners(y, x))
                                 for y, x in zip(ys.tolist(), xs.tolist())], dtype=fmap.dtype)

        @staticmethod
        def backward(ctx, grad_out):
            ys, xs = ctx.saved_tensors
            H, W = ctx.size
            grad = [[0.0] * W for _ in range(H)]
            for y, x, g in zip(ys.tolist(), xs.tolist(), grad_out.tolist()):
                corners = _corners(y, x)
                w = [c[2] for c in corners]
                w = w[::-1] if weights == "mirrored" else [w[0], w[2], w[1], w[3]] if weights == "swapped" else w
                for (i, j, _), wk in zip(corners, w):
                    grad[i][j] = grad[i][j] + wk * g if accumulate else wk * g  # without +=: the last point wins
            return torch.tensor(grad, dtype=grad_out.dtype), None, None
    return BilinearSample.apply


def bilinear_ops(fmap, ys, xs):
    """The same sampling with torch operations: autograd derives its backward (the expected gradients)."""
    y0, x0 = ys.floor().long(), xs.floor().long()
    ly, lx = ys - y0, xs - x0
    return ((1 - ly) * (1 - lx) * fmap[y0, x0] + (1 - ly) * lx * fmap[y0, x0 + 1]
            + ly * (1 - lx) * fmap[y0 + 1, x0] + ly * lx * fmap[y0 + 1, x0 + 1])


BILINEAR_BACKWARD = Component("bilinear_backward", "bilinear sampling's backward pass, by hand, as a "
                              "torch.autograd.Function (RoIAlign's gradient, Sec. 3)",
                              {"bilinear_sample": sample_function()}, [
    mistake("your backward gives each pixel the weight of the opposite corner: pixel (y0, x0) gets "
            "(1 - ly)(1 - lx), the largest when the point is near it", bilinear_sample=sample_function(
                weights="mirrored")),
    mistake("your backward sends a point's gradient to the wrong corner: pixel (y0, x0 + 1), right of the point, "
            "gets (1 - ly) lx and pixel (y0 + 1, x0), below it, ly (1 - lx) (x and y are swapped in yours)",
            bilinear_sample=sample_function(weights="swapped")),
    mistake("where points share a pixel, their gradients must add up: grad[i, j] += w * g (index_put_ with "
            "accumulate=True, or index_add_), not grad[i, j] = w * g, where the last point overwrites the others",
            bilinear_sample=sample_function(accumulate=False)),
])


def weighted_gradient(functions, x):
    """A measure: d (sum_k out[k] * grad_out[k]) / d fmap, (H, W): what backward returns for grad_out."""
    fmap = x["fmap"].clone().requires_grad_(True)
    out = functions.bilinear_sample(fmap, x["ys"], x["xs"])
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise Unusable("an output with no gradient", "return YourFunction.apply(fmap, ys, xs)")
    (grad,) = torch.autograd.grad(out, fmap, grad_outputs=x["grad_out"].to(out.dtype), allow_unused=True)
    return torch.zeros_like(fmap) if grad is None else grad


def made_by_a_function(functions, x):
    """A measure: 1 when the output's grad_fn is a custom autograd.Function's backward."""
    out = functions.bilinear_sample(x["fmap"].clone().requires_grad_(True), x["ys"], x["xs"])
    if not isinstance(getattr(out, "grad_fn", None), torch.autograd.function.BackwardCFunction):
        kind = type(getattr(out, "grad_fn", None)).__name__
        raise Unusable(f"an output whose gradient autograd derives itself (grad_fn {kind})",
                       "write class BilinearSample(torch.autograd.Function) with a forward and a backward, and "
                       "return BilinearSample.apply(fmap, ys, xs): the exercise is the backward")
    return torch.tensor(1.0)


def passes_gradcheck(functions, x):
    """A measure: 1 when torch.autograd.gradcheck accepts the backward (float64, finite differences)."""
    fmap = x["fmap"].clone().requires_grad_(True)
    try:
        torch.autograd.gradcheck(lambda f: functions.bilinear_sample(f, x["ys"], x["xs"]), (fmap,))
    except torch.autograd.gradcheck.GradcheckError as e:
        raise Unusable("torch.autograd.gradcheck: " + " ".join(str(e).split())[:300]) from None
    return torch.tensor(1.0)


SQUARES = (3.0 * torch.arange(3.0, dtype=torch.float64)[:, None] + torch.arange(3.0, dtype=torch.float64)) ** 2


def _case(fmap, points, grad_out=None):
    ys, xs = (torch.tensor(v, dtype=fmap.dtype) for v in zip(*points))
    grad_out = torch.ones(len(points), dtype=fmap.dtype) if grad_out is None else grad_out
    return {"fmap": fmap, "ys": ys, "xs": xs, "grad_out": grad_out}


def _forward(functions, x):
    return functions.bilinear_sample(x["fmap"], x["ys"], x["xs"])


def _autograd(x):
    return weighted_gradient(types.SimpleNamespace(bilinear_sample=bilinear_ops), x)


@BILINEAR_BACKWARD.core("forward: a point reads its 4 neighbours with weights (1 - ly)(1 - lx), (1 - ly) lx, "
                        "ly (1 - lx), ly lx (hand-computed)")
def _(t):
    t.expect("fmap (3y + x)^2 on 3 x 3; points (0.5, 0.5): (0 + 1 + 9 + 16) / 4; (1.25, 0): 0.75 * 9 + 0.25 * 36; "
             "(0, 1.5): (1 + 4) / 2", _case(SQUARES, [(0.5, 0.5), (1.25, 0.0), (0.0, 1.5)]), [6.5, 15.75, 2.5],
             measure=_forward)


@BILINEAR_BACKWARD.core("the gradient comes from your backward: the output's grad_fn is your autograd.Function's")
def _(t):
    t.expect("fmap (3y + x)^2, one point", _case(SQUARES, [(0.5, 0.5)]), 1.0, measure=made_by_a_function)


@BILINEAR_BACKWARD.core("backward: pixel (i, j) receives weight * grad_out[k] from each point k that reads it "
                        "(against autograd on the same sampling written with torch operations)")
def _(t):
    x = _case(torch.zeros(4, 5, dtype=torch.float64), [(0.25, 0.5)], torch.tensor([2.0], dtype=torch.float64))
    t.expect("one point (0.25, 0.5), grad_out 2: 2 * (0.375, 0.375, 0.125, 0.125) to its 4 neighbours", x,
             _autograd(x), measure=weighted_gradient)
    gen = torch.Generator().manual_seed(0)
    points = (torch.rand(5, 2, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 4.0])).tolist()
    x = _case(torch.randn(4, 5, generator=gen, dtype=torch.float64), points,
              torch.randn(5, generator=gen, dtype=torch.float64))
    t.expect("5 random points on a random 4 x 5 map, random grad_out", x, _autograd(x), measure=weighted_gradient)


@BILINEAR_BACKWARD.core("where points share a pixel, their gradients add up")
def _(t):
    x = _case(torch.zeros(3, 3, dtype=torch.float64), [(0.5, 0.5), (0.25, 0.75), (1.5, 0.5)])
    t.expect("points (0.5, 0.5) and (0.25, 0.75) share a cell; (1.5, 0.5) shares pixels (1, 0), (1, 1) with them",
             x, _autograd(x), measure=weighted_gradient)


@BILINEAR_BACKWARD.core("torch.autograd.gradcheck in float64: your backward agrees with finite differences of your "
                        "forward")
def _(t):
    gen = torch.Generator().manual_seed(1)
    points = (torch.rand(6, 2, generator=gen, dtype=torch.float64) * torch.tensor([2.0, 3.0])).tolist()
    t.expect("6 random points on a random 3 x 4 map", _case(torch.randn(3, 4, generator=gen, dtype=torch.float64),
                                                          points), 1.0, measure=passes_gradcheck)


@BILINEAR_BACKWARD.convention("the output and the gradient have fmap's dtype: float32 in, float32 out; float64 in, "
                              "float64 out")
def _(t):
    for dtype in (torch.float32, torch.float64):
        x = _case(SQUARES.to(dtype), [(0.5, 0.5), (1.25, 0.0)])
        t.expect_dtype(f"{dtype}: the output", x, dtype, measure=_forward)
        t.expect_dtype(f"{dtype}: the gradient", x, dtype, measure=weighted_gradient)
