/**
 * gRPC status codes, as numbers on the wire and as names in messages.
 * Kept free of @grpc/grpc-js so the browser client can use it.
 */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16
} as const

export type StatusCode = (typeof Status)[keyof typeof Status]

const names: string[] = []
for (const [name, code] of Object.entries(Status)) names[code] = name

/** The name of a status code (`'NOT_FOUND'`), or `'UNKNOWN_STATUS_<n>'` for codes outside 0..16. */
export function statusName (code: number): string {
  return names[code] ?? `UNKNOWN_STATUS_${code}`
}
