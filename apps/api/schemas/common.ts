// Schemas shared by every resource: problem+json, ids, pagination.
import { Type, type Static, type TSchema } from 'typebox';

export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.Optional(Type.String()),
    instance: Type.Optional(Type.String()),
    code: Type.String({ description: 'Stable machine-readable code (see the error catalogue).' }),
    errors: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String() }))),
  },
  { $id: 'Problem', title: 'Problem', description: 'RFC 9457 problem details.' },
);

/** Response entries for the given error statuses, all problem+json. */
export function problems(...statuses: number[]) {
  return Object.fromEntries(
    statuses.map((s) => [s, { ...Type.Ref('Problem'), description: 'Problem details (application/problem+json)' }]),
  );
}

export const IdParams = Type.Object({ id: Type.String({ format: 'uuid' }) });

export const PageQuery = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
  cursor: Type.Optional(Type.String({ maxLength: 200, description: 'nextCursor of the previous page.' })),
};

/** The query of a list with no filters of its own. */
export const ListQuery = Type.Object(PageQuery);

/** A 204's (absent) body. */
export const NoContent = Type.Null();

/** Any JSON object (recipes, metrics, inspections as stored), typed as a record to read fields from. */
export const FreeObject = Type.Unsafe<Record<string, unknown>>(Type.Object({}, { additionalProperties: true }));

/**
 * `T | null` as `type: [T, "null"]` rather than `anyOf`: the response serializer (fast-json-stringify) writes the
 * former directly but validates every `anyOf` branch per response, which showed up in job-submission latency.
 */
export function Nullable<T extends TSchema>(schema: T, options: Record<string, unknown> = {}) {
  const { type, ...rest } = schema as unknown as { type: string };
  return Type.Unsafe<Static<T> | null>({ ...rest, ...options, type: [type, 'null'] });
}

/** A string enum as `{type: string, enum}` (one schema, not an `anyOf` of constants). */
export function StringEnum<const T extends readonly string[]>(values: T, options: Record<string, unknown> = {}) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}

/**
 * `{$ref: id}` to a schema registered on the app (app.addSchema), typed as what it refers to: a bare Type.Ref is
 * `unknown` to the type provider, which would leave the handler's reply unchecked.
 */
export function ref<T>(id: string) {
  return Type.Unsafe<T>(Type.Ref(id));
}
