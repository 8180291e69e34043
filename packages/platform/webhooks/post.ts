// One HTTP POST to an already-resolved, already-checked address. The socket goes to `target.address` (no DNS lookup
// here); Host and TLS SNI/certificate checks still use the URL's hostname. Redirects are not followed (a 3xx is just
// a non-2xx answer). Separate connect and whole-response timeouts; the response body is read up to a small cap.
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import type { ResolvedTarget } from './resolve-target.js';

export interface PostOptions {
  /** @defaultValue 5000 */
  connectTimeoutMs?: number;
  /** From sending the request to the end of the response body. @defaultValue 15000 */
  responseTimeoutMs?: number;
  /** Bytes of the response body kept for the attempt record. @defaultValue 1024 */
  maxBodyBytes?: number;
}

export interface PostResult {
  /** HTTP status, or null when no response arrived. */
  status: number | null;
  latencyMs: number;
  /** The first bytes of the response body (for the attempt record), or null. */
  body: string | null;
  /** Why no usable response arrived (timeout, connection refused, TLS error...). */
  error: string | null;
}

export function postToTarget(
  target: ResolvedTarget,
  headers: Record<string, string>,
  body: string,
  options: PostOptions = {},
): Promise<PostResult> {
  const connectTimeoutMs = options.connectTimeoutMs ?? 5000;
  const responseTimeoutMs = options.responseTimeoutMs ?? 15000;
  const maxBodyBytes = options.maxBodyBytes ?? 1024;
  const { url } = target;
  const hostname = url.hostname.replace(/^\[|\]$/g, '');
  const isHttps = url.protocol === 'https:';
  const port = url.port ? Number(url.port) : isHttps ? 443 : 80;
  const started = performance.now();
  const payload = Buffer.from(body, 'utf8');

  return new Promise<PostResult>((resolve) => {
    let settled = false;
    const finish = (r: Omit<PostResult, 'latencyMs'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(connectTimer);
      clearTimeout(responseTimer);
      resolve({ ...r, latencyMs: Math.round(performance.now() - started) });
    };
    const requestOptions: https.RequestOptions = {
      host: target.address,
      family: target.family,
      port,
      method: 'POST',
      path: `${url.pathname}${url.search}`,
      headers: {
        ...headers,
        host: url.host,
        'content-type': 'application/json',
        'content-length': String(payload.length),
        'user-agent': 'onnx-compress-webhooks/1',
      },
      agent: false,
    };
    if (isHttps && !isIP(hostname)) requestOptions.servername = hostname;
    const req = (isHttps ? https : http).request(requestOptions);

    const connectTimer = setTimeout(
      () => req.destroy(new Error(`connect timeout after ${connectTimeoutMs} ms`)),
      connectTimeoutMs,
    );
    const responseTimer = setTimeout(
      () => req.destroy(new Error(`response timeout after ${responseTimeoutMs} ms`)),
      responseTimeoutMs,
    );
    req.on('socket', (socket) => {
      socket.once(isHttps ? 'secureConnect' : 'connect', () => clearTimeout(connectTimer));
    });
    req.on('error', (e) => finish({ status: null, body: null, error: e.message }));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let kept = 0;
      res.on('data', (chunk: Buffer) => {
        if (kept < maxBodyBytes) {
          chunks.push(chunk.subarray(0, maxBodyBytes - kept));
          kept += Math.min(chunk.length, maxBodyBytes - kept);
        }
      });
      res.on('end', () =>
        finish({ status: res.statusCode ?? null, body: Buffer.concat(chunks).toString('utf8'), error: null }),
      );
      res.on('error', (e) =>
        finish({ status: res.statusCode ?? null, body: Buffer.concat(chunks).toString('utf8'), error: e.message }),
      );
    });
    req.end(payload);
  });
}
