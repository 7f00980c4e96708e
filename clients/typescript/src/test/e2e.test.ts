// End-to-end: the real server (SWITCHBOARD_BIN) on a free port, driven through the generated client.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status, type ServiceError } from "@grpc/grpc-js";
import {
  connect, errorInfo, GenerateRequest, ListModelsRequest, Modality, SelectionMode, SelectModelRequest,
  type GenerateResponse, type RouterServiceClient,
} from "../index.js";

let server: ChildProcess;
let router: RouterServiceClient;

function request(accountId: string, requestId = "", extra: Partial<GenerateRequest> = {}): GenerateRequest {
  return GenerateRequest.fromPartial({ accountId, requestId, modality: Modality.MODALITY_TEXT, prompt: "Hello from TypeScript", ...extra });
}

before(async () => {
  const bin = process.env.SWITCHBOARD_BIN;
  assert.ok(bin, "SWITCHBOARD_BIN must name the switchboard command (make clients-test sets it)");
  const dir = mkdtempSync(join(tmpdir(), "sb-ts-"));
  const portFile = join(dir, "port");
  server = spawn(bin, ["serve", "--listen", "127.0.0.1:0", "--port-file", portFile, "--workers", "1",
    "--ledger", `sqlite:${join(dir, "l.db")}`, "--auto-create-accounts", "--log-level", "warning",
    "--sim-ttft-ms", "0", "--sim-inter-token-ms", "20", "--sim-tokens", "20"], { stdio: "ignore" });
  const deadline = Date.now() + 30_000;
  while (!(existsSync(portFile) && readFileSync(portFile, "utf8").trim())) {
    assert.ok(Date.now() < deadline, "server did not start");
    await new Promise((r) => setTimeout(r, 50));
  }
  router = connect(`127.0.0.1:${readFileSync(portFile, "utf8").trim()}`).router;
});

after(() => {
  router?.close();
  server?.kill("SIGTERM");
});

describe("Switchboard from TypeScript", () => {
  it("lists models", async () => {
    const resp = await new Promise<any>((ok, fail) =>
      router.listModels(ListModelsRequest.fromPartial({ modality: Modality.MODALITY_SPEECH }), (e, r) => (e ? fail(e) : ok(r))));
    assert.equal(resp.models.length, 4);
  });

  it("selects automatically and pinned", async () => {
    const select = (req: GenerateRequest) =>
      new Promise<any>((ok, fail) => router.selectModel(SelectModelRequest.fromPartial({ request: req }), (e, r) => (e ? fail(e) : ok(r))));
    const auto = await select(request("ts"));
    assert.equal(auto.decision.model.id, "gemini-3.1-flash-lite");
    assert.equal(auto.decision.mode, SelectionMode.SELECTION_MODE_AUTOMATIC);
    const pinned = await select(request("ts", "", { pinnedModelId: "gpt-5.4" }));
    assert.equal(pinned.decision.model.id, "gpt-5.4");
    assert.deepEqual(pinned.decision.fallbackModelIds, []);
  });

  it("streams a generation to completion", async () => {
    const frames: GenerateResponse[] = [];
    await new Promise<void>((ok, fail) => {
      const call = router.generate(request("ts", "g1"), { deadline: new Date(Date.now() + 30_000) });
      call.on("data", (f: GenerateResponse) => frames.push(f));
      call.on("error", fail);
      call.on("end", ok);
    });
    assert.ok(frames[0].decision);
    assert.equal(frames.filter((f) => f.delta).length, 20);
    const completion = frames[frames.length - 1].completion;
    assert.equal(completion?.creditsCharged, 1);
    assert.equal(completion?.balanceRemaining, 499);
  });

  it("cancels mid-stream promptly", async () => {
    const err = await new Promise<ServiceError>((ok) => {
      const call = router.generate(request("ts-cancel", "c1"), { deadline: new Date(Date.now() + 30_000) });
      let deltas = 0;
      call.on("data", (f: GenerateResponse) => {
        if (f.delta && ++deltas === 3) call.cancel();
      });
      call.on("error", ok);
    });
    assert.equal(err.code, status.CANCELLED);
  });

  it("reads an error's reason", async () => {
    const err = await new Promise<ServiceError>((ok, fail) =>
      router.selectModel(SelectModelRequest.fromPartial({ request: request("ts", "", { pinnedModelId: "gpt-9" }) }), (e) => (e ? ok(e) : fail(new Error("no error")))));
    const info = errorInfo(err);
    assert.equal(info.code, status.NOT_FOUND);
    assert.equal(info.reason, "MODEL_NOT_FOUND");
    assert.equal(info.metadata.model_id, "gpt-9");
  });
});
