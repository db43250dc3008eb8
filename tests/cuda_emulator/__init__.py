"""The CUDA kernels of csrc/cuda, run on the CPU: builds them as they are, with the
emulator (emulator.h) standing in for the GPU and for csrc/cuda/hardware.cuh, and calls
their launchers with CPU tensors (the ops, through the CUDA backend: op_cases.py).

    emulator, op_library = build(directory)
    emulator.call("conv2d_forward_implicit_gemm", dtype, x, w, None, y, y.stride(), geometry, ...)

Tensors go as their data pointers (registered as the buffers cp.async may read), lists as
int64 arrays, dtypes as codes. Tensors made by emulator.guarded() carry guard bytes on
either side, checked after every call they are passed to."""
import ctypes
import os
import pathlib
import platform
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.utils import cpp_extension

HERE = pathlib.Path(__file__).resolve().parent
CSRC = HERE.parents[1] / "csrc"

# The fibers switch with x86-64 System V assembly.
SUPPORTED = platform.system() == "Linux" and platform.machine() == "x86_64"

DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}

GUARD_BYTES = 256
GUARD_FILL = 0x5A


def build(directory):
    """Compiles the kernels with the emulator, then links them into
    directory/emulated_cuda.so (the launchers, called through ctypes: an Emulator) and into
    directory/emulated_ops.so (the same, and the ops of csrc/ops.cpp on CPU tensors served
    by the CUDA backend of csrc/cuda/backend.cpp: to load with torch.ops.load_library in
    a process without classic_ops, whose ops it registers). Returns the Emulator and the
    op library's path."""
    directory = pathlib.Path(directory)
    sources = directory / "csrc"
    shutil.copytree(CSRC, sources, ignore=shutil.ignore_patterns("cpu", "*.so", "*.o"))
    kernels = sources / "cuda"
    shutil.copy(HERE / "hardware.cuh", kernels)  # over the real one

    compiler = os.environ.get("CXX", "c++")
    includes = [f"-I{HERE / 'include'}", f"-I{HERE}", f"-I{kernels}", f"-I{sources}"]
    flags = ["-std=c++20", "-O2", "-fPIC", "-fno-strict-aliasing", *includes]
    torch_flags = ["-std=c++20", "-O1", "-fPIC", "-DCLASSIC_OPS_WITH_CUDA", "-DCLASSIC_OPS_WITH_SM90A",
                   f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
                   *includes, *(f"-I{path}" for path in cpp_extension.include_paths())]
    kernel_jobs = [([*flags, "-x", "c++", "-include", str(HERE / "prelude.h")], source)
                   for source in sorted(kernels.glob("*.cu"))]
    kernel_jobs.append((flags, HERE / "emulator.cpp"))
    op_layer = [sources / name for name in ("ops.cpp", "conv2d.cpp", "max_pool2d.cpp",
                                            "checks.cpp", "grad_input_as_forward.cpp")]
    op_jobs = [(torch_flags, source)
               for source in (*op_layer, kernels / "backend.cpp", HERE / "cuda_backend_on_cpu.cpp")]
    jobs = kernel_jobs + [(flags, HERE / "entry_points.cpp")] + op_jobs

    def compile_one(job):
        job_flags, source = job
        obj = directory / f"{source.parent.name}_{source.stem}.o"
        subprocess.run([compiler, *job_flags, "-c", str(source), "-o", str(obj)], check=True,
                       capture_output=True, text=True)
        return obj

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        objects = list(pool.map(compile_one, jobs))
    kernel_objects = objects[:len(kernel_jobs) + 1]  # with the entry points
    op_objects = objects[len(kernel_jobs) + 1:]

    launchers = directory / "emulated_cuda.so"
    subprocess.run([compiler, "-shared", "-o", str(launchers), *map(str, kernel_objects)],
                   check=True)
    ops = directory / "emulated_ops.so"
    torch_libraries = cpp_extension.library_paths()[0]
    subprocess.run([compiler, "-shared", "-o", str(ops), *map(str, kernel_objects + op_objects),
                    f"-L{torch_libraries}", f"-Wl,-rpath,{torch_libraries}", "-lc10",
                    "-ltorch_cpu", "-ltorch"], check=True)
    return Emulator(launchers), ops


class Emulator:
    def __init__(self, library):
        self._lib = ctypes.CDLL(str(library))
        self._lib.emulated_last_error.restype = ctypes.c_char_p

    def guarded(self, tensor):
        """A copy of `tensor` (contiguous, or channels_last) in memory with guard bytes on
        either side."""
        assert tensor.is_contiguous() or tensor.is_contiguous(memory_format=torch.channels_last)
        storage_bytes = _extent(tensor) * tensor.element_size()
        raw = torch.full((storage_bytes + 2 * GUARD_BYTES,), GUARD_FILL, dtype=torch.uint8)
        view = raw[GUARD_BYTES:GUARD_BYTES + storage_bytes].view(tensor.dtype)
        view = view.as_strided(tensor.shape, tensor.stride())
        view.copy_(tensor)
        view.guard_bytes = raw
        return view

    def call(self, launcher, *args, copies_land_at_issue=False, seed=0):
        """Runs csrc/cuda's `launcher` (or a helper of launchers.h) and returns its result;
        raises AssertionError where an emulator check failed."""
        self._lib.emulated_configure(int(copies_land_at_issue), seed)
        self._lib.emulated_clear_buffers()
        converted = []
        for arg in args:
            if isinstance(arg, torch.Tensor):
                bytes_used = _extent(arg) * arg.element_size()
                self._lib.emulated_register_buffer(ctypes.c_void_p(arg.data_ptr()),
                                                   ctypes.c_size_t(bytes_used))
                converted.append(ctypes.c_void_p(arg.data_ptr()))
            elif isinstance(arg, torch.dtype):
                converted.append(DTYPE_CODES[arg])
            elif isinstance(arg, (list, tuple)):
                converted.append((ctypes.c_int64 * len(arg))(*arg))
            elif arg is None:
                converted.append(None)
            else:
                converted.append(int(arg))
        result = getattr(self._lib, "emulated_" + launcher)(*converted)
        error = self._lib.emulated_last_error().decode()
        assert not error, f"{launcher}: {error}"
        for arg in args:
            raw = getattr(arg, "guard_bytes", None)
            if raw is not None:
                guards = torch.cat([raw[:GUARD_BYTES], raw[-GUARD_BYTES:]])
                assert bool((guards == GUARD_FILL).all()), f"{launcher} wrote outside a tensor"
        return result


def _extent(tensor):
    """Elements from the first to one past the last that `tensor` addresses."""
    return 1 + sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride()))
