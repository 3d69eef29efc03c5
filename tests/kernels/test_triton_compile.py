"""The Triton kernels compile for an H100/H200 (sm_90) even where no GPU is present.

The interpreter checks what the kernels compute, not that the GPU compiler accepts them; this
runs the real compiler (Triton IR -> PTX -> cubin with the bundled ptxas) in a subprocess,
because this session's Triton runs in interpreter mode.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

import audit.kernels.int8_triton as tri

I32, F32, I8 = "i32", "*fp32", "*i8"
kernels = {
    "_quantize_kernel": ([F32, I8, F32, F32, I32, I32, I32], {"ROWS": 64, "BS": 64}),
    "_dequantize_kernel": ([I8, F32, F32, I32, I32, I32], {"ROWS": 64, "BS": 128}),
    "_paired_cosine_kernel": ([I8, F32, F32, I8, F32, F32, F32, I32, I32, I32], {"ROWS": 64, "BS": 64}),
    "_concept_kernel": (
        [I8, F32, F32, "*fp16", F32, F32, I8, F32, "*i32", I32, I32, I32, I32],
        {"ROWS": 64, "BS": 64, "KP": 64, "TOPK": 5},
    ),
}
assert not tri.interpreting()
for name, (types, consts) in kernels.items():
    fn = getattr(tri, name)
    names = fn.arg_names
    signature = dict(zip(names, types + ["constexpr"] * len(consts)))
    constexprs = {(names.index(k),): v for k, v in consts.items()}
    compiled = triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", 90, 32))
    ptx = compiled.asm["ptx"]
    assert compiled.asm["cubin"], name
    print(name, "div.full" not in ptx, len(ptx))
"""


@pytest.mark.slow
def test_triton_kernels_compile_to_sm90_cubins() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.split()
    for name in ("_quantize_kernel", "_dequantize_kernel", "_paired_cosine_kernel", "_concept_kernel"):
        assert name in lines
    # IEEE division only: the fast approximate div.full.f32 would break bit-equality with the CPU.
    assert lines[lines.index("_quantize_kernel") + 1] == "True"
