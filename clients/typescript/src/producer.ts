// A kaizend producer: routes each request by the routing bucket it watches, and publishes
// query, feedback and correction events, validated against the JSON Schemas, with the
// Nats-Msg-Id header set to the event id (JetStream drops a re-publish inside the stream's
// duplicate window). The TypeScript counterpart of kaizend_client.Producer.
import { randomUUID } from "node:crypto";
import type { JetStreamClient, KV, NatsConnection, QueuedIterator, KvEntry } from "nats";
import { type Arm, type Routing, assign } from "./routing.js";
import { EventSchemas, type Kind } from "./schemas.js";

export interface ProducerOptions {
  /** The daemon's routing.bucket. */
  bucket?: string;
  /** The daemon's stream.subject_prefix: events go to <prefix>.<kind>. */
  subjectPrefix?: string;
  /** Names the service on its query events. */
  service?: string;
  /** Where the JSON Schemas are (default: the repository's schemas/). */
  schemasDir?: string;
}

export interface QueryOptions {
  unitId: string;
  output: unknown;
  latencyMs: number;
  arm?: Arm | "shadow";
  version?: string;
  error?: string;
  queryId?: string;
  fallbackUsed?: boolean;
}

export class Producer {
  readonly routes = new Map<string, Routing>();
  private watcher?: QueuedIterator<KvEntry>;

  private constructor(
    private readonly js: JetStreamClient,
    private readonly schemas: EventSchemas,
    private readonly subjectPrefix: string,
    private readonly service: string | undefined,
  ) {}

  /** Open the routing bucket (never creating it) and wait for its current entries. */
  static async start(nc: NatsConnection, options: ProducerOptions = {}): Promise<Producer> {
    const js = nc.jetstream();
    const producer = new Producer(
      js,
      new EventSchemas(options.schemasDir),
      options.subjectPrefix ?? "kaizen.events",
      options.service,
    );
    const kv: KV = await js.views.kv(options.bucket ?? "kaizen_routing", { bindOnly: true });
    let ready!: () => void;
    const initialised = new Promise<void>((resolve) => (ready = resolve));
    producer.watcher = await kv.watch({ initializedFn: () => ready() });
    void producer.follow(producer.watcher);
    await initialised;
    return producer;
  }

  private async follow(watcher: QueuedIterator<KvEntry>): Promise<void> {
    for await (const entry of watcher) {
      if (entry.operation !== "PUT" || entry.length === 0) {
        this.routes.delete(entry.key);
        continue;
      }
      try {
        this.routes.set(entry.key, entry.json<Routing>());
      } catch (err) {
        console.error(`routing entry ${entry.key} ignored: ${err}`);
      }
    }
  }

  stop(): void {
    this.watcher?.stop();
  }

  /** The arm and version that should answer `unitId` for `task`. */
  route(task: string, unitId: string): [Arm, string] {
    const routing = this.routes.get(task);
    return routing === undefined ? ["champion", "unknown"] : assign(routing, unitId);
  }

  private async publish(kind: Kind, fields: Record<string, unknown>): Promise<string> {
    const event = { event_id: randomUUID(), ts: new Date().toISOString(), ...fields };
    this.schemas.check(kind, event);
    await this.js.publish(`${this.subjectPrefix}.${kind}`, JSON.stringify(event), {
      msgID: event.event_id,
    });
    return event.event_id;
  }

  /** Publish a query event (routed now unless arm and version are given); its query id. */
  async query(task: string, text: string, options: QueryOptions): Promise<string> {
    let { arm, version } = options;
    if (arm === undefined || version === undefined) {
      [arm, version] = this.route(task, options.unitId);
    }
    const queryId = options.queryId ?? randomUUID();
    await this.publish("query", {
      query_id: queryId,
      task,
      text,
      model_version: version,
      arm,
      unit_id: options.unitId,
      output: options.output,
      latency_ms: options.latencyMs,
      error: options.error ?? null,
      service: this.service ?? null,
      fallback_used: options.fallbackUsed ?? null,
    });
    return queryId;
  }

  /** Publish a user's judgement of a query's answer (or of one result, docId). */
  async feedback(
    queryId: string,
    judgement: { rating?: number; thumbs?: "up" | "down"; docId?: string; comment?: string },
  ): Promise<string> {
    return this.publish("feedback", {
      query_id: queryId,
      rating: judgement.rating ?? null,
      thumbs: judgement.thumbs ?? null,
      doc_id: judgement.docId ?? null,
      comment: judgement.comment ?? null,
    });
  }

  /** Publish the right answer for a query. */
  async correction(queryId: string, correctedOutput: object, author?: string): Promise<string> {
    return this.publish("correction", {
      query_id: queryId,
      corrected_output: correctedOutput,
      author: author ?? null,
    });
  }
}
