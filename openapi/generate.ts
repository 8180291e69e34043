// Regenerates openapi/openapi.json from the route schemas: npm run openapi
import { writeFileSync } from 'node:fs';
import { OPENAPI_PATH, openApiDocument, serialise } from './document.js';

writeFileSync(OPENAPI_PATH, serialise(await openApiDocument()));
console.log(`wrote ${OPENAPI_PATH}`);
