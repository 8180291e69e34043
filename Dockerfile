# syntax=docker/dockerfile:1
# onnx-compress: one image for the API (`serve`), CPU workers (`worker`) and `start` (both in one process); the
# `gpu` target adds the CUDA 12 + cuDNN 9 runtime and installs onnxruntime-node with its CUDA execution provider.
# The sources are compiled to dist/ (scripts/build.mjs, what `npm ci` runs as `prepare`); the Prisma client is committed.
ARG NODE_VERSION=20

FROM node:${NODE_VERSION}-bookworm-slim AS cpu
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
COPY scripts/ ./scripts/
# CPU image: no CUDA download (the variable is for npm < 11.19, which runs onnxruntime-node's own install script).
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY . .
RUN node scripts/build.mjs
RUN mkdir -p /data /tmp/onnx-compress && chown -R node:node /data /tmp/onnx-compress
USER node
ENV PORT=8080 HOST=0.0.0.0 STORAGE_DIR=/data/storage WORK_DIR=/tmp/onnx-compress
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "bin/onnx-compress.mjs"]
CMD ["serve"]

# GPU workers: CUDA 12 runtime with cuDNN 9 (what onnxruntime-node 1.29's CUDA 12 EP links against), Node copied
# from the official image, onnxruntime-node installed with its CUDA 12 binaries (downloaded from NuGet at build
# time: the build machine needs that network).
FROM node:${NODE_VERSION}-bookworm-slim AS node
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 AS gpu
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
  && apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
COPY scripts/ ./scripts/
RUN ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY . .
RUN node scripts/build.mjs
RUN mkdir -p /data /tmp/onnx-compress && chown -R ubuntu:ubuntu /data /tmp/onnx-compress
USER ubuntu
ENV STORAGE_DIR=/data/storage WORK_DIR=/tmp/onnx-compress WORKER_QUEUES=gpu EXECUTION_PROVIDERS=cuda,cpu
ENTRYPOINT ["node", "bin/onnx-compress.mjs"]
CMD ["worker"]
