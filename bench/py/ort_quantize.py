"""ONNX Runtime's own 4-bit weight quantizer (onnxruntime.quantization.matmul_nbits_quantizer), for bench/gptq.bench.ts.

usage: python ort_quantize.py IN.onnx OUT.onnx MODE [EXCLUDE_NODE ...]
MODE: rtn-sym-32 | rtn-sym-128 | rtn-asym-128 (the default quantizer, symmetric or not, block 32/128)
      kquant-32 (k-quant, the quantizer's CLI defaults: block 32, symmetric)
"""
import sys

from onnxruntime.quantization.matmul_nbits_quantizer import (
    KQuantWeightOnlyQuantConfig,
    MatMulNBitsQuantizer,
)


def main() -> None:
    src, dst, mode, *exclude = sys.argv[1:]
    if mode.startswith("rtn-"):
        _, sym, block = mode.split("-")
        q = MatMulNBitsQuantizer(src, block_size=int(block), is_symmetric=sym == "sym", nodes_to_exclude=exclude)
    elif mode == "kquant-32":
        q = MatMulNBitsQuantizer(
            src, block_size=32, is_symmetric=True, nodes_to_exclude=exclude, algo_config=KQuantWeightOnlyQuantConfig()
        )
    else:
        raise SystemExit(f"unknown mode {mode}")
    q.process()
    q.model.save_model_to_file(dst, use_external_data_format=False)


if __name__ == "__main__":
    main()
