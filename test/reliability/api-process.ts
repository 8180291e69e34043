// The API as its own process, for tests that kill it (SIGKILL mid-upload): `startServer` configured from the
// environment like `onnx-compress serve`, without the auth/webhook/UI extensions (every request is the default
// tenant). Prints "listening <url>" once it accepts requests.
import { loadConfig } from '../../packages/platform/config/config.js';
import { closeOnSignals, startServer } from '../../apps/api/server.js';

const server = await startServer(loadConfig());
closeOnSignals(server.close, console.log);
console.log(`listening ${server.url}`);
