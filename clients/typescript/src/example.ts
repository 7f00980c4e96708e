// Selects a model and streams a generation:
//   npm run example -- "Write a haiku"
//   npm run example -- --target 127.0.0.1:50051 "Write a haiku"
// The target defaults to $SWITCHBOARD_TARGET, else 127.0.0.1:50051. A failure prints its gRPC
// status and Switchboard's reason, and exits 1.
import { parseArgs } from "node:util";
import type { ServiceError } from "@grpc/grpc-js";
import { connect, errorInfo, GenerateRequest, Modality, SelectModelRequest } from "./index.js";

const { values, positionals } = parseArgs({
  options: { target: { type: "string" }, account: { type: "string", default: "ts-example" } },
  allowPositionals: true,
});
const target = values.target ?? process.env.SWITCHBOARD_TARGET ?? "127.0.0.1:50051";
const prompt = positionals.join(" ") || "Hello from TypeScript";

function fail(what: string, e: ServiceError): void {
  const info = errorInfo(e);
  console.error(`${what} failed: ${e.message}${info.reason ? ` (reason ${info.reason})` : ""}`);
  process.exitCode = 1;
}

const { router } = connect(target);
const request = GenerateRequest.fromPartial({ accountId: values.account, modality: Modality.MODALITY_TEXT, prompt });
router.selectModel(SelectModelRequest.fromPartial({ request }), (err, resp) => {
  if (err) {
    fail("select", err);
    router.close();
    return;
  }
  console.error(`# would use ${resp.decision?.model?.id}`);
  const call = router.generate(GenerateRequest.fromPartial({ accountId: values.account, modality: Modality.MODALITY_TEXT,
    prompt }), { deadline: new Date(Date.now() + 30_000) });
  call.on("data", (f) => f.delta && process.stdout.write(f.delta.text));
  call.on("error", (e: ServiceError) => fail("generate", e));   // call.cancel() stops it early
  call.on("end", () => {
    process.stdout.write("\n");
    router.close();
  });
});
