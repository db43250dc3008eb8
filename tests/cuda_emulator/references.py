"""float64 references and the comparison the emulated tests share."""
import torch

# The unit a result may be off by, relative to the sum of the magnitudes of its terms:
# output rounding for half and bfloat16; float accumulation for float (where the reference
# applies TF32's rounding of the operands too; TF32_UNIT where it does not) and double
# accumulation for double.
UNIT = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7, torch.float32: 2.0**-20,
        torch.float64: 2.0**-50}
TF32_UNIT = 2.0**-10


def assert_close(got, want, magnitude, unit, what):
    """|got - want| within 4 units of the sum of the terms' magnitudes, and no NaN."""
    assert not torch.isnan(got).any(), f"{what}: NaN (an element left unwritten?)"
    error = ((got.double() - want).abs() / (magnitude * unit + 1e-300)).max().item()
    assert error < 4, f"{what}: off by {error:.3g} units"


def assert_conv_gradients(dx, dw, x, w, dy, stride, padding, dilation, groups, unit):
    """dx and dw against torch.nn.grad's in float64, for output gradient dy."""
    xd, wd, dyd = x.double(), w.double(), dy.double()

    def grad_input(w, dy):
        return torch.nn.grad.conv2d_input(x.shape, w, dy, stride, padding, dilation, groups)

    def grad_weight(x, dy):
        return torch.nn.grad.conv2d_weight(x, w.shape, dy, stride, padding, dilation, groups)

    assert_close(dx, grad_input(wd, dyd), grad_input(wd.abs(), dyd.abs()), unit, "grad_input")
    assert_close(dw, grad_weight(xd, dyd), grad_weight(xd.abs(), dyd.abs()), unit, "grad_weight")


def assert_max_pool_grad_input(dx, dy, indices, unit):
    """dx: dy summed into the positions `indices` name, each plane apart."""
    batch, channels = dx.shape[:2]
    want = torch.zeros(batch, channels, dx.shape[2] * dx.shape[3], dtype=torch.float64)
    want.scatter_add_(2, indices.reshape(batch, channels, -1),
                      dy.double().reshape(batch, channels, -1))
    # a position is the maximum of at most 4 windows in these tests
    magnitude = 4 * dy.double().abs().max().expand(dx.shape)
    assert_close(dx, want.view(dx.shape), magnitude, unit, "max-pool grad_input")
