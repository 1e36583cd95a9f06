// The JSON Schemas refuse what kaizend's ingestion refuses, and accept the example's events.
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { EventSchemas, InvalidEvent } from "./schemas.js";

const schemas = new EventSchemas();
const base = { event_id: "e1", query_id: "q1", ts: "2026-11-23T10:00:00Z" };
const query = {
  ...base,
  task: "parser",
  text: "wind in devon",
  model_version: "v0",
  output: { technology: "Wind" },
  latency_ms: 3.5,
};

test("valid events pass, unknown fields included", () => {
  schemas.check("query", query);
  schemas.check("query", { ...query, arm: "shadow", unit_id: "u1", newer_field: [1, 2] });
  schemas.check("feedback", { ...base, rating: 5 });
  schemas.check("feedback", { ...base, thumbs: "down", doc_id: "site-1" });
  schemas.check("correction", { ...base, corrected_output: ["a"] });
});

const refused: [string, "query" | "feedback" | "correction", Record<string, unknown>][] = [
  ["blank id", "query", { ...query, event_id: "   " }],
  ["control character in an id", "query", { ...query, query_id: "q\n1" }],
  ["id over 256 characters", "query", { ...query, event_id: "x".repeat(257) }],
  ["text over 10,000 characters", "query", { ...query, text: "x".repeat(10_001) }],
  ["NUL in text", "query", { ...query, text: "a\u0000b" }],
  ["negative latency", "query", { ...query, latency_ms: -1 }],
  ["unknown arm", "query", { ...query, arm: "treatment" }],
  ["missing model_version", "query", { ...base, task: "parser", text: "t", latency_ms: 1 }],
  ["not a date-time", "query", { ...query, ts: "yesterday" }],
  ["schema_version 0", "query", { ...query, schema_version: 0 }],
  ["schema_version over INTEGER", "query", { ...query, schema_version: 2 ** 31 }],
  ["rating 6", "feedback", { ...base, rating: 6 }],
  ["rating 2.5", "feedback", { ...base, rating: 2.5 }],
  ["no rating nor thumbs", "feedback", { ...base, comment: "meh" }],
  ["null rating, no thumbs", "feedback", { ...base, rating: null }],
  ["corrected_output a string", "correction", { ...base, corrected_output: "Wind" }],
];

for (const [what, kind, event] of refused) {
  test(`refused: ${what}`, () => {
    assert.throws(() => schemas.check(kind, event), InvalidEvent);
  });
}
