// The shared routing vectors (schemas/routing-vectors.json): the same answers as Python.
import { strict as assert } from "node:assert";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { assign, unitPosition } from "./routing.js";
import { SCHEMAS_DIR } from "./schemas.js";

interface Vector {
  salt: string;
  unit_id: string;
  sha256_prefix: string;
  position: number;
  share: number;
  arm: "champion" | "challenger";
}

const { vectors } = JSON.parse(readFileSync(join(SCHEMAS_DIR, "routing-vectors.json"), "utf8")) as {
  vectors: Vector[];
};

test("routing vectors: position and arm", () => {
  assert.ok(vectors.length >= 20);
  for (const v of vectors) {
    assert.equal(unitPosition(v.salt, v.unit_id), v.position, `position of ${JSON.stringify(v)}`);
    const routing = { task: "t", champion: "v1", challenger: "v2", challenger_weight: v.share, salt: v.salt };
    const [arm, version] = assign(routing, v.unit_id);
    assert.equal(arm, v.arm, `arm of ${JSON.stringify(v)}`);
    assert.equal(version, arm === "challenger" ? "v2" : "v1");
  }
  console.log(`routing vectors passed: ${vectors.length}`);
});

test("no challenger: the champion answers whatever the share", () => {
  for (const v of vectors) {
    assert.deepEqual(assign({ task: "t", champion: "v1", challenger: null, salt: v.salt }, v.unit_id), [
      "champion",
      "v1",
    ]);
  }
});
