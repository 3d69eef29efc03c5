"""AVX-512 VNNI int8 dot products for Numba kernels: ``vpdpbusd`` through an LLVM intrinsic.

``vpdpbusd`` multiplies 64 unsigned bytes by 64 signed bytes and adds each group of four products
into one of 16 int32 lanes: 64 multiply-adds per instruction, against 16 for a float32 FMA. LLVM
does not form it from plain Numba loops (measured: they compile to ``vpmulld``), so the kernels
call it directly. Signed codes on both sides are handled by offsetting the row's codes by 128
(``x ^ 0x80`` per byte makes them unsigned) and starting each accumulator at
``-128 * sum(concept codes of the block)``, which cancels the offset exactly in integers.

``has_vnni()`` tells whether this CPU runs it; callers fall back to another kernel when not.
"""

from __future__ import annotations

import functools
import os

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

I32 = ir.IntType(32)
F32 = ir.FloatType()
LANES = 16  # concepts per vector
I32X16 = ir.VectorType(I32, LANES)
F32X16 = ir.VectorType(F32, LANES)
MAX_VECTORS = 4  # concept vectors per call (64 concepts): 2 rows x 4 = 8 accumulators in registers
ROW_GROUP = 2  # rows per call: each concept vector loaded from L1 feeds both rows


@functools.cache
def has_vnni() -> bool:
    """True when this CPU has AVX-512 VNNI (``MMAUDIT_INT8_VNNI=0`` forces the fallback)."""
    if os.environ.get("MMAUDIT_INT8_VNNI", "1") == "0":
        return False
    from llvmlite import binding

    features = binding.get_host_cpu_features()
    return bool(features.get("avx512vnni", False) and features.get("avx512bw", False))


def _pointer(builder: ir.IRBuilder, base: ir.Value, offset: ir.Value, typ: ir.Type) -> ir.Value:
    return builder.bitcast(builder.gep(base, [offset]), typ.as_pointer())


def _make_rows_kernel(rows: int, vectors: int):
    """An intrinsic scoring ``rows`` consecutive rows against ``vectors`` x 16 concepts.

    Arguments (flat arrays, element offsets): ``out`` f32, ``out_off`` (row 0, first concept),
    ``out_row`` (out elements per row); ``words`` uint32 view of the row codes, ``w_off`` (row 0,
    block 0), ``w_row``; ``scales`` f32 (block scale x 1 / row norm, per row and block), ``s_off``,
    ``s_row``; ``p`` int8 concept codes laid out (block, word, concept, 4 bytes) with ``p_off``
    (bytes, first concept), ``p_word`` (bytes per word step = 4 x padded concepts); ``init``
    int32 and ``cscale`` f32, both (block, padded concepts), ``c_off`` (first concept),
    ``c_block`` (padded concepts); ``blocks``, ``words_per_block``.

    out[r, c] = sum_b s[r, b] * cscale[b, c] * (init[b, c] + sum_w vpdpbusd(row_u8, concept_s8))
    """

    @intrinsic
    def score_rows(
        typingctx,
        out, out_off, out_row, words, w_off, w_row, scales, s_off, s_row,
        p, p_off, p_word, init, cscale, c_off, c_block, blocks, words_per_block,
    ):  # fmt: skip
        sig = types.void(
            out, out_off, out_row, words, w_off, w_row, scales, s_off, s_row,
            p, p_off, p_word, init, cscale, c_off, c_block, blocks, words_per_block,
        )  # fmt: skip

        def codegen(context, builder, signature, args):
            (out_v, out_off, out_row, words_v, w_off, w_row, scales_v, s_off, s_row,
             p_v, p_off, p_word, init_v, cscale_v, c_off, c_block, blocks, per_block) = args  # fmt: skip
            tys = signature.args
            arr = {
                name: context.make_array(tys[i])(context, builder, val).data
                for name, i, val in (
                    ("out", 0, out_v), ("words", 3, words_v), ("scales", 6, scales_v),
                    ("p", 9, p_v), ("init", 12, init_v), ("cscale", 13, cscale_v),
                )
            }  # fmt: skip
            i64 = out_off.type
            dpbusd = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(I32X16, [I32X16] * 3), "llvm.x86.avx512.vpdpbusd.512"
            )
            flip = ir.Constant(I32, 0x80808080 - (1 << 32))  # signed codes -> unsigned (+128)

            def const(v: int) -> ir.Constant:
                return ir.Constant(i64, v)

            def vector(name: str, at: ir.Value, typ: ir.Type, align: int = 4) -> ir.Value:
                return builder.load(_pointer(builder, arr[name], at, typ), align=align)

            def broadcast(value: ir.Value) -> ir.Value:
                undef = ir.Constant(ir.VectorType(value.type, LANES), ir.Undefined)
                one = builder.insert_element(undef, value, ir.Constant(I32, 0))
                return builder.shuffle_vector(one, undef, ir.Constant(I32X16, [0] * LANES))

            acc = [(r, v) for r in range(rows) for v in range(vectors)]
            # allocas in the entry block: LLVM keeps these accumulators in registers
            fsum = {rv: cgutils.alloca_once_value(builder, ir.Constant(F32X16, None)) for rv in acc}
            isum = {rv: cgutils.alloca_once(builder, I32X16) for rv in acc}
            with cgutils.for_range(builder, blocks) as block_loop:
                b = block_loop.index
                cbase = builder.add(builder.mul(b, c_block), c_off)
                for r, v in acc:
                    builder.store(vector("init", builder.add(cbase, const(16 * v)), I32X16), isum[r, v])
                wbase = builder.mul(b, per_block)
                with cgutils.for_range(builder, per_block) as word_loop:
                    t = builder.add(wbase, word_loop.index)
                    pbase = builder.add(p_off, builder.mul(t, p_word))
                    concept = [
                        vector("p", builder.add(pbase, const(64 * v)), I32X16, 1) for v in range(vectors)
                    ]
                    for r in range(rows):
                        at = builder.add(builder.add(w_off, builder.mul(w_row, const(r))), t)
                        word = builder.load(builder.gep(arr["words"], [at]))
                        word = builder.bitcast(word, I32) if word.type != I32 else word
                        row = broadcast(builder.xor(word, flip))
                        for v in range(vectors):
                            total = builder.call(dpbusd, [builder.load(isum[r, v]), row, concept[v]])
                            builder.store(total, isum[r, v])
                for r in range(rows):
                    s_at = builder.add(builder.add(s_off, builder.mul(s_row, const(r))), b)
                    scale = broadcast(builder.load(builder.gep(arr["scales"], [s_at])))
                    for v in range(vectors):
                        cs = vector("cscale", builder.add(cbase, const(16 * v)), F32X16)
                        dots = builder.sitofp(builder.load(isum[r, v]), F32X16)
                        step = builder.fmul(builder.fmul(dots, cs), scale)
                        builder.store(builder.fadd(builder.load(fsum[r, v]), step), fsum[r, v])
            for r, v in acc:
                at = builder.add(builder.add(out_off, builder.mul(out_row, const(r))), const(16 * v))
                builder.store(builder.load(fsum[r, v]), _pointer(builder, arr["out"], at, F32X16), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return score_rows


# one intrinsic per (rows, concept vectors); Numba kernels pick by literal branches
score_2x4, score_2x3, score_2x2, score_2x1 = (_make_rows_kernel(2, v) for v in (4, 3, 2, 1))
score_1x4, score_1x3, score_1x2, score_1x1 = (_make_rows_kernel(1, v) for v in (4, 3, 2, 1))
