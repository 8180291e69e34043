// ioredis connections for BullMQ. Workers need maxRetriesPerRequest: null (blocking commands must wait, not fail).
import { Redis } from 'ioredis';

export function createRedis(url: string, role: 'queue' | 'worker' | 'subscriber'): Redis {
  return new Redis(url, {
    maxRetriesPerRequest: role === 'queue' ? 3 : null,
    enableReadyCheck: true,
    connectionName: `onnx-compress-${role}`,
    lazyConnect: false,
  });
}
