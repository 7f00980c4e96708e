// Selects a model and streams a generation: node dist/example.js [target] [prompt]
import { connect, errorInfo, GenerateRequest, Modality, SelectModelRequest } from "./index.js";
import type { ServiceError } from "@grpc/grpc-js";

const target = process.argv[2] ?? "127.0.0.1:50051";
const prompt = process.argv[3] ?? "Hello from TypeScript";
const { router } = connect(target);
const request = GenerateRequest.fromPartial({ accountId: "ts-example", modality: Modality.MODALITY_TEXT, prompt });

router.selectModel(SelectModelRequest.fromPartial({ request }), (err, resp) => {
  if (err) {
    console.error("select failed:", errorInfo(err).reason);
    process.exit(1);
  }
  console.error(`# would use ${resp.decision?.model?.id}`);
  const deadline = new Date(Date.now() + 60_000);
  const stream = router.generate(request, { deadline });
  stream.on("data", (frame) => {
    if (frame.delta) process.stdout.write(frame.delta.text);
    if (frame.completion) console.error(`\n# done: ${frame.completion.creditsCharged} credits`);
  });
  stream.on("error", (e: ServiceError) => console.error("generate failed:", errorInfo(e).reason));
  stream.on("end", () => router.close());
});
