// The webhook section of the service configuration: retry schedule, SSRF exemptions, timeouts, the base URL put in
// payload links (defaulting to this service's own port, already read by the loader), the dispatcher's sweep.
import { parseAllowList, type AllowList } from '../webhooks/address-policy.js';
import { DEFAULT_RETRY_SCHEDULE, parseRetrySchedule } from '../webhooks/retry-schedule.js';
import { ConfigError, num, type Env } from './parse.js';

export interface WebhookConfig {
  /** Delays between attempts (WEBHOOK_RETRY_SCHEDULE). @defaultValue 5s,5m,30m,2h,5h,10h,10h */
  retryScheduleMs: number[];
  /** ± fraction applied to each delay (WEBHOOK_RETRY_JITTER). @defaultValue 0.2 */
  retryJitter: number;
  /** Hosts and CIDRs exempt from the SSRF policy (WEBHOOK_ALLOW_HOSTS). @defaultValue none */
  allowList: AllowList;
  /** WEBHOOK_CONNECT_TIMEOUT_MS. @defaultValue 5000 */
  connectTimeoutMs: number;
  /** WEBHOOK_RESPONSE_TIMEOUT_MS: request sent → response body read. @defaultValue 15000 */
  responseTimeoutMs: number;
  /** Base URL put in artifact links of payloads (PUBLIC_URL). @defaultValue http://localhost:PORT */
  publicBaseUrl: string;
  /** Deliveries in flight per worker process (WEBHOOK_CONCURRENCY). @defaultValue 10 */
  concurrency: number;
  /** How often the dispatcher looks for finished jobs without a delivery (WEBHOOK_SWEEP_MS). @defaultValue 5000 */
  sweepIntervalMs: number;
}

/** `port`: the service's PORT as the loader validated it (the default of PUBLIC_URL). */
export function webhookSection(env: Env, port: number): WebhookConfig {
  let retryScheduleMs: number[];
  let allowList: AllowList;
  try {
    retryScheduleMs = parseRetrySchedule(env.WEBHOOK_RETRY_SCHEDULE ?? DEFAULT_RETRY_SCHEDULE);
    allowList = parseAllowList(env.WEBHOOK_ALLOW_HOSTS);
  } catch (e) {
    throw new ConfigError(`${(e as Error).message}`);
  }
  return {
    retryScheduleMs,
    retryJitter: num(env, 'WEBHOOK_RETRY_JITTER', 0.2, 0, 1),
    allowList,
    connectTimeoutMs: num(env, 'WEBHOOK_CONNECT_TIMEOUT_MS', 5000, 1, 600_000),
    responseTimeoutMs: num(env, 'WEBHOOK_RESPONSE_TIMEOUT_MS', 15_000, 1, 600_000),
    publicBaseUrl: env.PUBLIC_URL || `http://localhost:${port}`,
    concurrency: num(env, 'WEBHOOK_CONCURRENCY', 10, 1, 1000),
    sweepIntervalMs: num(env, 'WEBHOOK_SWEEP_MS', 5000, 50, 3_600_000),
  };
}
