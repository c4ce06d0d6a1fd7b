"""Planted bug (tests/test_check.py): the hand-written backward of bilinear sampling sends a point's gradient to
the wrong corners: (y0, x0 + 1) and (y0 + 1, x0) get each other's weights (x and y swapped). The forward is
right. Otherwise the solution of notebooks/solutions/my_ops.py."""
import torch


def corners(ys, xs, swapped=False):
    y0, x0 = ys.floor().long(), xs.floor().long()
    ly, lx = ys - y0, xs - x0
    right, below = ((1 - ly) * lx, ly * (1 - lx)) if not swapped else (ly * (1 - lx), (1 - ly) * lx)
    return [(y0, x0, (1 - ly) * (1 - lx)), (y0, x0 + 1, right), (y0 + 1, x0, below), (y0 + 1, x0 + 1, ly * lx)]


class BilinearSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fmap, ys, xs):
        ctx.save_for_backward(ys, xs)
        ctx.size = fmap.shape
        return sum(w * fmap[i, j] for i, j, w in corners(ys, xs))

    @staticmethod
    def backward(ctx, grad_out):
        ys, xs = ctx.saved_tensors
        grad = grad_out.new_zeros(ctx.size)
        for i, j, w in corners(ys, xs, swapped=True):  # BUG: the weights of the right and lower pixels swapped
            grad.index_put_((i, j), w * grad_out, accumulate=True)
        return grad, None, None


def bilinear_sample(fmap, ys, xs):
    return BilinearSample.apply(fmap, ys, xs)
