// Dense model outputs kept between the two halves of an evaluation (runtime/evaluate.ts runs the dense model over
// every batch, releases it, then runs the compressed model): batches stay in memory up to `maxHeldBytes`, the rest
// are appended to a scratch file and read back one batch at a time, so an evaluation set whose outputs are larger
// than the model (LM logits over a long set) costs disk, not memory.
import { open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

/** Outputs held in memory before spilling to disk. */
export const DEFAULT_MAX_HELD_OUTPUT_BYTES = 256 * 2 ** 20;

let files = 0;

export class OutputStore {
  private readonly held = new Map<number, Float32Array>();
  private readonly spilled = new Map<number, { offset: number; length: number }>();
  private heldBytes = 0;
  private file?: FileHandle;
  private path?: string;
  private end = 0;

  constructor(
    private readonly dir: string,
    private readonly maxHeldBytes = DEFAULT_MAX_HELD_OUTPUT_BYTES,
  ) {}

  /** Bytes written to the scratch file (0 when everything fit in memory). */
  get spilledBytes(): number {
    return this.end;
  }

  async put(index: number, values: Float32Array): Promise<void> {
    if (this.heldBytes + values.byteLength <= this.maxHeldBytes) {
      this.held.set(index, values);
      this.heldBytes += values.byteLength;
      return;
    }
    if (!this.file) {
      this.path = join(this.dir, `dense-outputs-${process.pid}-${++files}.f32`);
      this.file = await open(this.path, 'w+');
    }
    await this.file.write(
      new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
      0,
      values.byteLength,
      this.end,
    );
    this.spilled.set(index, { offset: this.end, length: values.length });
    this.end += values.byteLength;
  }

  /** The values put under `index` (each is read once: memory is let go as the compressed half advances). */
  async take(index: number): Promise<Float32Array> {
    const have = this.held.get(index);
    if (have) {
      this.held.delete(index);
      this.heldBytes -= have.byteLength;
      return have;
    }
    const at = this.spilled.get(index);
    if (!at || !this.file) throw new Error(`no dense outputs stored for batch ${index}`);
    const out = new Float32Array(at.length);
    const bytes = new Uint8Array(out.buffer);
    for (let done = 0; done < bytes.length;) {
      const { bytesRead } = await this.file.read(bytes, done, bytes.length - done, at.offset + done);
      if (bytesRead === 0) throw new Error(`scratch file ${this.path} ended early`);
      done += bytesRead;
    }
    this.spilled.delete(index);
    return out;
  }

  async close(): Promise<void> {
    this.held.clear();
    await this.file?.close().catch(() => {});
    if (this.path) await rm(this.path, { force: true });
    this.file = undefined;
  }
}
