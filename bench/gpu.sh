#!/usr/bin/env bash
# Issue 12's GPU check as ONE unattended script: on the lent GPU machine (CUDA 13, no Node.js, no network), with the
# bundle of ../shared/gpu/README.md carried into .gpu/ and the compiled bench in dist-bench/, it assembles Node.js +
# onnxruntime-node with the CUDA EP, generates the LLM-shaped model (random weights, default ~250 M parameters), and
# runs every method (2:4 magnitude, Wanda, SparseGPT, SLiM, 4-bit RTN) with EXECUTION_PROVIDERS cuda,cpu and then cpu
# on the same host, method by method, printing a table (method, EP, wall, stages with the EP each reported) — all
# inside a 6-minute budget (jobs that would start later are SKIPPED, and running ones are cut at the budget).
#
#   bash bench/gpu.sh --build                      # here: compile bench/llm.bench.ts + its job runner to dist-bench/ (esbuild)
#   bash bench/gpu.sh [--params 250M] [--cpu-only] [--methods magnitude,rtn,wanda,sparsegpt,slim] [--budget 330]
#
# Without .gpu/ it uses the node on PATH (how its CPU path is tested here: bash bench/gpu.sh --params 20M --cpu-only).
# Results: printed, and JSON in $OUT/gpu-bench.json when $OUT is set (the device tool's output folder).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
params=250M
cpu_only=0
budget=330
methods=magnitude,rtn,wanda,sparsegpt,slim
samples=8
seq=128
build_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --params) params=$2; shift 2 ;;
    --cpu-only) cpu_only=1; shift ;;
    --methods) methods=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --samples) samples=$2; shift 2 ;;
    --seq) seq=$2; shift 2 ;;
    --build) build_only=1; shift ;;
    *) echo "gpu.sh: unknown flag '$1'" >&2; exit 2 ;;
  esac
done

build() {
  # esbuild ships with tsx (a dependency). onnxruntime-node stays outside the bundle: it is native, and on the GPU
  # machine it comes from the carried bundle (with the CUDA provider). createRequire lets bundled CommonJS require().
  [ -x node_modules/.bin/esbuild ] || { echo "gpu.sh: node_modules/.bin/esbuild missing (npm ci first)" >&2; exit 2; }
  rm -rf dist-bench
  node_modules/.bin/esbuild bench/llm.bench.ts bench/lib/llm-job.ts --bundle --platform=node --format=esm \
    --target=node20 --outdir=dist-bench --out-extension:.js=.mjs --external:onnxruntime-node --log-level=warning \
    "--banner:js=import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"
  ls -la dist-bench dist-bench/lib
}
if [ "$build_only" = 1 ]; then build; exit 0; fi

# 1. Node.js and onnxruntime-node with the CUDA EP, from the carried bundle (see ../shared/gpu/README.md).
if [ -f .gpu/assemble.sh ] && ! command -v node >/dev/null 2>&1; then
  bash .gpu/assemble.sh >/dev/null
  bash .gpu/assemble.sh unpack
  # shellcheck disable=SC1091
  . /tmp/nb/env.sh
fi
command -v node >/dev/null 2>&1 || { echo "gpu.sh: no node: carry the bundle into .gpu/ (make-bundle.sh)" >&2; exit 2; }

# 2. The compiled bench (no tsx there). ESM ignores NODE_PATH, so the bundle's node_modules is linked beside it.
[ -f dist-bench/llm.bench.mjs ] || build
if [ -n "${NODE_PATH:-}" ] && [ ! -e node_modules/onnxruntime-node ]; then ln -sfn "$NODE_PATH" dist-bench/node_modules; fi

# 3. Which GPU, then the jobs: method by method, each on cuda,cpu (a GPU worker's EXECUTION_PROVIDERS) then cpu.
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "node $(node --version), $(nproc) cores; setup took $(( $(date +%s) - start )) s of the ${budget} s budget"
eps=(--ep cuda,cpu --ep cpu)
[ "$cpu_only" = 1 ] && eps=(--ep cpu)
work=${TMPDIR:-/tmp}/gpu-bench
mkdir -p "$work"
left=$(( budget - ($(date +%s) - start) ))
node dist-bench/llm.bench.mjs --params "$params" --methods "$methods" "${eps[@]}" --interleave --no-python \
  --samples "$samples" --seq "$seq" --deadline "$left" --dir "$work" --json "$work/gpu-bench.json"
if [ -n "${OUT:-}" ]; then cp "$work/gpu-bench.json" "$OUT/"; fi
rm -rf "$work"/out-* "$work"/*-gemm.onnx
echo "gpu.sh: done in $(( $(date +%s) - start )) s"
