// Job helpers shared by the fault tests: submit a 2:4 job through the app, read it back, wait for a state.
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { waitFor } from '../integration/helpers.js';

/** POST /v1/jobs with a 2:4 sparsity recipe (plus `extra` body fields); returns the job id. */
export async function submit(app: FastifyInstance, modelId: string, extra: object = {}): Promise<string> {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/jobs',
    payload: { modelId, recipe: { method: 'sparsity', pattern: '2:4' }, ...extra },
  });
  assert.equal(res.statusCode, 202, res.body);
  return res.json().id;
}

export const getJob = async (app: FastifyInstance, id: string) =>
  (await app.inject({ method: 'GET', url: `/v1/jobs/${id}` })).json();

export const waitState = (app: FastifyInstance, id: string, states: string[], ms = 60_000) =>
  waitFor(async () => {
    const j = await getJob(app, id);
    return states.includes(j.state) ? j : null;
  }, ms);
