// A direct call of an op from Python below autograd, for classic_ops.functional.
#pragma once

#include <Python.h>

namespace classic_ops {

// call_below_autograd(op, *args): op (a torch.ops OpOverload) called through the
// dispatcher with autograd excluded, as under torch._C._AutoDispatchBelowAutograd, the GIL
// released while it runs, where no gradient can be asked for (grad mode off, or no tensor
// requiring grad). Takes only what the functional API passes: plain tensors (not
// subclasses), None, bools, ints and lists or tuples of ints, one for each of the schema's
// arguments or its defaults. Otherwise returns NotImplemented, for the caller to make the
// usual call, which records the graph, or converts or rejects the arguments as torch does.
PyObject* call_below_autograd(PyObject* module, PyObject* const* args, Py_ssize_t nargs);

}  // namespace classic_ops
