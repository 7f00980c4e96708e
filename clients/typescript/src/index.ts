// A small TypeScript client for Switchboard: the ts-proto stubs (on @grpc/grpc-js) plus helpers.
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { ErrorInfo } from "./gen/google/rpc/error_details.js";
import { Status } from "./gen/google/rpc/status.js";
import { AccountServiceClient } from "./gen/switchboard/v1/accounts.js";
import { RouterServiceClient } from "./gen/switchboard/v1/router.js";

export * from "./gen/switchboard/v1/catalog.js";
export * from "./gen/switchboard/v1/router.js";
export * from "./gen/switchboard/v1/accounts.js";

/** Clients for both services over one insecure channel (use grpc-js credentials for TLS). */
export function connect(target: string): { router: RouterServiceClient; accounts: AccountServiceClient } {
  const creds = credentials.createInsecure();
  return { router: new RouterServiceClient(target, creds), accounts: new AccountServiceClient(target, creds) };
}

/** The google.rpc.ErrorInfo Switchboard attaches to an error: reason and metadata. */
export interface SwitchboardErrorInfo {
  code: number;
  reason: string;
  metadata: Record<string, string>;
}

/** Decodes `grpc-status-details-bin` of a failed call; reason is "" when there is none. */
export function errorInfo(err: ServiceError): SwitchboardErrorInfo {
  const raw = err.metadata?.get("grpc-status-details-bin")?.[0];
  if (raw instanceof Buffer) {
    const status = Status.decode(raw);
    for (const detail of status.details) {
      if (detail.typeUrl === "type.googleapis.com/google.rpc.ErrorInfo") {
        const info = ErrorInfo.decode(detail.value);
        return { code: err.code, reason: info.reason, metadata: info.metadata };
      }
    }
  }
  return { code: err.code, reason: "", metadata: {} };
}

/** Call metadata carrying an API key. */
export function withApiKey(key: string): Metadata {
  const md = new Metadata();
  md.set("authorization", `Bearer ${key}`);
  return md;
}
