// The example producer: for each unit, route a parser query, publish it, then the user's
// feedback and a correction. Prints one JSON line per unit with the ids and the arm.
//
//   NATS_URL=nats://127.0.0.1:4222 node dist/example.js u1 u2 u3
//
// Environment: NATS_URL (default nats://127.0.0.1:4222), ROUTING_BUCKET (kaizen_routing),
// SUBJECT_PREFIX (kaizen.events), TASK (parser).
import { connect } from "nats";
import { Producer } from "./producer.js";

async function main(units: string[]): Promise<void> {
  const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
  const task = process.env.TASK ?? "parser";
  try {
    const producer = await Producer.start(nc, {
      bucket: process.env.ROUTING_BUCKET,
      subjectPrefix: process.env.SUBJECT_PREFIX,
      service: "ts-example",
    });
    for (const unitId of units.length ? units : ["u1"]) {
      const [arm, version] = producer.route(task, unitId);
      const started = performance.now();
      const output = { technology: "Wind", location: "Devon" }; // the service's own answer
      const queryId = await producer.query(task, "wind farms in devon", {
        unitId,
        output,
        latencyMs: performance.now() - started,
        arm,
        version,
      });
      const feedbackId = await producer.feedback(queryId, { rating: 4, thumbs: "up" });
      const correctionId = await producer.correction(queryId, { technology: "Wind" }, "ts-example");
      console.log(JSON.stringify({ unitId, arm, version, queryId, feedbackId, correctionId }));
    }
    producer.stop();
  } finally {
    await nc.drain();
  }
}

main(process.argv.slice(2)).catch((err) => {
  console.error(err);
  process.exit(1);
});
