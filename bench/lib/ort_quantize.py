"""ONNX Runtime's own Python 4-bit quantizer (MatMulNBitsQuantizer: RTN, symmetric, block 32) on a model file, as a
same-file peer for bench/llm.bench.ts. Prints one JSON line: seconds (load + quantize + save), peak RSS, output bytes.
Run by the bench with PYTHONPATH pointing at onnxruntime 1.30 + onnx installed from the machine's wheels."""
import json
import os
import resource
import sys
import time

src, out, block = sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 32
t0 = time.perf_counter()
import onnx  # noqa: E402
import onnxruntime  # noqa: E402
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer  # noqa: E402

t_import = time.perf_counter() - t0
t1 = time.perf_counter()
model = onnx.load(src)  # external data is read into memory here: the quantizer works on in-memory tensors
t_load = time.perf_counter() - t1
t2 = time.perf_counter()
q = MatMulNBitsQuantizer(model, block_size=block, is_symmetric=True, accuracy_level=4)
q.process()
t_quant = time.perf_counter() - t2
t3 = time.perf_counter()
q.model.save_model_to_file(out, use_external_data_format=True)
t_save = time.perf_counter() - t3
size = os.path.getsize(out) + (os.path.getsize(out + ".data") if os.path.exists(out + ".data") else 0)
nodes = sum(1 for n in q.model.model.graph.node if n.op_type == "MatMulNBits")
print(json.dumps({
    "ortVersion": onnxruntime.__version__,
    "seconds": t_load + t_quant + t_save,
    "stages": {"import": t_import, "load": t_load, "quantize": t_quant, "save": t_save},
    "maxRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "outputBytes": size,
    "matmulNBits": nodes,
}))
