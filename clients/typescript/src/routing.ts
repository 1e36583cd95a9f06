// Sticky routing, the same hash as kaizend's Python client (kaizend_client.routing):
//
//   position = first 8 bytes of sha256("<salt>:<unit_id>") (UTF-8), big-endian, / 2**64
//   arm = "challenger" if the entry has a challenger and position < challenger_weight
//
// checked against the shared vectors in schemas/routing-vectors.json (routing.test.ts).
import { createHash } from "node:crypto";

export type Arm = "champion" | "challenger";

/** One task's routing entry (schemas/routing-entry.json), written by the daemon only. */
export interface Routing {
  task: string;
  champion: string;
  challenger?: string | null;
  challenger_weight?: number;
  experiment_id?: string | null;
  salt?: string;
  shadow?: boolean;
}

/** The unit's fixed place in [0, 1) for this salt. */
export function unitPosition(salt: string, unitId: string): number {
  const digest = createHash("sha256").update(`${salt}:${unitId}`, "utf8").digest();
  // A 64-bit integer rounds to the nearest double exactly as Python's int / 2**64 does.
  return Number(digest.readBigUInt64BE(0)) / 2 ** 64;
}

/** The arm and version that answer `unitId` under `routing`. */
export function assign(routing: Routing, unitId: string): [Arm, string] {
  const weight = routing.challenger_weight ?? 0;
  if (routing.challenger && unitPosition(routing.salt ?? "", unitId) < weight) {
    return ["challenger", routing.challenger];
  }
  return ["champion", routing.champion];
}
