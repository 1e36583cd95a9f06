// The events checked against kaizend's JSON Schemas (draft 2020-12) before they are published:
// one the daemon would reject fails here, at the call, instead of in rejected_events.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

export type Kind = "query" | "feedback" | "correction";
export const KINDS: readonly Kind[] = ["query", "feedback", "correction"];

/** The repository's schemas/ (this package lives in clients/typescript/). */
export const SCHEMAS_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "schemas");

export class InvalidEvent extends Error {
  constructor(
    readonly kind: string,
    readonly problems: string[],
  ) {
    super(`invalid ${kind} event: ${problems.join("; ")}`);
    this.name = "InvalidEvent";
  }
}

export class EventSchemas {
  private readonly validators: Map<Kind, ValidateFunction>;

  constructor(dir: string = SCHEMAS_DIR) {
    const ajv = new Ajv2020({ allErrors: true, strict: true });
    addFormats.default(ajv);
    this.validators = new Map(
      KINDS.map((kind) => {
        const schema = JSON.parse(readFileSync(join(dir, `${kind}-event.json`), "utf8"));
        return [kind, ajv.compile(schema)];
      }),
    );
  }

  /** Throws `InvalidEvent` naming every problem when `event` does not fit its schema. */
  check(kind: Kind, event: Record<string, unknown>): void {
    const validate = this.validators.get(kind);
    if (validate === undefined) {
      throw new InvalidEvent(kind, [`unknown kind: one of ${KINDS.join(", ")}`]);
    }
    if (!validate(event)) {
      const problems = (validate.errors ?? []).map(
        (e) => `${e.instancePath || "event"} ${e.message ?? e.keyword}`,
      );
      throw new InvalidEvent(kind, problems);
    }
  }
}
