"""Planted bug (tests/test_check.py): the hand-written backward of bilinear sampling writes each point's share into
the gradient (grad[i, j] = ...) instead of adding it, so that where points share a pixel only the last one
counts. Otherwise the solution of notebooks/solutions/my_ops.py."""
import torch


def corners(ys, xs):
    y0, x0 = ys.floor().long(), xs.floor().long()
    ly, lx = ys - y0, xs - x0
    return [(y0, x0, (1 - ly) * (1 - lx)), (y0, x0 + 1, (1 - ly) * lx), (y0 + 1, x0, ly * (1 - lx)),
            (y0 + 1, x0 + 1, ly * lx)]


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
        for k in range(len(ys)):
            for i, j, w in corners(ys[k:k + 1], xs[k:k + 1]):
                grad[i, j] = w * grad_out[k]  # BUG: = instead of +=, the last point that reads a pixel wins
        return grad, None, None


def bilinear_sample(fmap, ys, xs):
    return BilinearSample.apply(fmap, ys, xs)
