#!/usr/bin/env node
// Entry point of the `onnx-compress` binary. The project runs its TypeScript sources directly through tsx's loader,
// so a fresh clone works after `npm ci` with no build step to remember.
import { register } from 'tsx/esm/api';

register();
await import('../apps/cli/main.ts');
