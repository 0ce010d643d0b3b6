/**
 * The desktop client's API layer, as the Electron renderer writes it: typed from the
 * live OpenAPI document (`generated/schema.d.ts`, made by openapi-typescript) and
 * called through openapi-fetch, plus the chat WebSocket over the browser's own API.
 *
 * tests/clients/test_typescript.py regenerates the types from the app and compiles
 * this file with `tsc --strict`: a change of the document that breaks a client
 * breaks the build here first. By hand, with a server on port 8000:
 *
 *     npx openapi-typescript http://localhost:8000/openapi.json -o generated/schema.d.ts
 *     npx tsc -p . --strict
 */
import createClient, { type Middleware } from "openapi-fetch";

import type { components, paths } from "../generated/schema";

type Schemas = components["schemas"];
export type ErrorBody = Schemas["ErrorBody"];
export type AuthTokens = Schemas["AuthTokens"];
export type ChatRequest = Schemas["ChatRequest"];
export type ChatResponse = Schemas["ChatResponse"];
export type QuotaStatus = Schemas["QuotaStatus"];

// The header names a response declares, without the catch-all index signature: naming
// a header the document does not declare for that response is a compile error.
type Declared<H> = keyof { [K in keyof H as string extends K ? never : K]: H[K] };
type ChatOperation = paths["/api/v1/chat"]["post"];
type RecordRead = paths["/api/v1/storage/records/{record_id}"]["get"];
type RecordUpload = paths["/api/v1/storage/records"]["post"];

const REQUEST_ID: Declared<ChatOperation["responses"][200]["headers"]> = "X-Request-ID";
const DEMO_MODE: Declared<ChatOperation["responses"][200]["headers"]> = "X-Demo-Mode";
const QUOTA_RESET: Declared<ChatOperation["responses"][429]["headers"]> = "X-Quota-Reset";
const RETRY_AFTER: Declared<ChatOperation["responses"][429]["headers"]> = "Retry-After";
const CHECKSUM: Declared<RecordRead["responses"][200]["headers"]> = "X-Checksum";

/** A refusal of the API: its error body, and the headers that say when to retry. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId: string | null,
    readonly quotaReset: Date | null,
    readonly retryAfterSeconds: number | null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

function apiError(response: Response, body: ErrorBody): ApiError {
  const reset = response.headers.get(QUOTA_RESET);
  const retry = response.headers.get(RETRY_AFTER);
  return new ApiError(
    response.status,
    body.error,
    body.message,
    body.request_id ?? response.headers.get(REQUEST_ID),
    reset === null ? null : new Date(reset),
    retry === null ? null : Number(retry),
  );
}

export interface Credentials {
  accessToken(): string | null;
  demoSessionId(): string | null;
  llmKey(): string | null;
}

export function createApi(baseUrl: string, credentials: Credentials) {
  const client = createClient<paths>({ baseUrl });
  const authenticate: Middleware = {
    onRequest({ request }) {
      const token = credentials.accessToken();
      const session = credentials.demoSessionId();
      if (token !== null) {
        request.headers.set("Authorization", `Bearer ${token}`);
      } else if (session !== null) {
        request.headers.set("X-Demo-Session-Id", session);
      }
      return request;
    },
  };
  client.use(authenticate);

  return {
    async register(email: string, password: string): Promise<AuthTokens> {
      const { data, error, response } = await client.POST("/api/v1/auth/register", {
        body: { email, password },
      });
      if (error !== undefined) throw apiError(response, error);
      return data;
    },

    async login(email: string, password: string): Promise<AuthTokens> {
      const { data, error, response } = await client.POST("/api/v1/auth/login", {
        body: { email, password },
      });
      if (error !== undefined) throw apiError(response, error);
      return data;
    },

    async chat(
      request: ChatRequest,
    ): Promise<{ answer: ChatResponse; demoMode: boolean; requestId: string | null }> {
      const key = credentials.llmKey();
      const { data, error, response } = await client.POST("/api/v1/chat", {
        body: request,
        params: { header: key === null ? {} : { "X-LLM-API-KEY": key } },
      });
      if (error !== undefined) throw apiError(response, error);
      if (!("response" in data)) throw new Error("asked for a direct answer, got a plan");
      return {
        answer: data,
        demoMode: response.headers.get(DEMO_MODE) === "true",
        requestId: response.headers.get(REQUEST_ID),
      };
    },

    async quota(): Promise<QuotaStatus> {
      const { data, error, response } = await client.GET("/api/v1/quota/status");
      if (error !== undefined) throw apiError(response, error);
      return data;
    },

    async startDemo(accountType: string): Promise<{ sessionId: string; token: string }> {
      const { data, error, response } = await client.POST("/api/v1/demo/sessions", {
        body: { demo_account_type: accountType },
      });
      if (error !== undefined) throw apiError(response, error);
      return { sessionId: data.session_id, token: data.session_token };
    },

    async demoWorkspace(sessionId: string) {
      const { data, error, response } = await client.GET(
        "/api/v1/demo/sessions/{session_id}/workspace",
        { params: { path: { session_id: sessionId } } },
      );
      if (error !== undefined) throw apiError(response, error);
      return data;
    },

    async agent(name: string) {
      const { data, error, response } = await client.GET("/api/v1/agents/{name}", {
        params: { path: { name } },
      });
      if (error !== undefined) throw apiError(response, error);
      return data.tools.map((tool) => tool.name);
    },

    /** Stores an already encrypted record; the server checks its SHA-256. */
    async upload(
      table: string,
      encrypted: Uint8Array<ArrayBuffer>,
    ): Promise<RecordUpload["responses"][201]["content"]["application/json"]> {
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encrypted));
      const checksum = Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
      const headers: RecordUpload["parameters"]["header"] = {
        "X-Table": table,
        "X-Checksum": checksum,
      };
      const token = credentials.accessToken();
      const response = await fetch(`${baseUrl}/api/v1/storage/records`, {
        method: "POST",
        headers: {
          ...headers,
          "Content-Type": "application/octet-stream",
          ...(token === null ? {} : { Authorization: `Bearer ${token}` }),
        },
        body: encrypted,
      });
      if (!response.ok) throw apiError(response, (await response.json()) as ErrorBody);
      return (await response.json()) as RecordUpload["responses"][201]["content"]["application/json"];
    },

    async download(recordId: string): Promise<{ bytes: ArrayBuffer; checksum: string | null }> {
      const { data, error, response } = await client.GET("/api/v1/storage/records/{record_id}", {
        params: { path: { record_id: recordId } },
        parseAs: "arrayBuffer",
      });
      if (error !== undefined) throw apiError(response, error);
      return { bytes: data, checksum: response.headers.get(CHECKSUM) };
    },
  };
}

/** What `/chat/stream` sends: tokens, a demo marker, pings, the last frame or an error. */
export type StreamFrame =
  | { token: string }
  | { demo: true }
  | { ping: true }
  | ({ done: true } & ChatResponse)
  | ErrorBody;

export interface StreamHandlers {
  token(text: string): void;
  demo?(): void;
}

/** Streams one chat over the WebSocket; resolves with the last frame. */
export function streamChat(
  wsUrl: string,
  accessToken: string | null,
  request: ChatRequest,
  handlers: StreamHandlers,
): Promise<ChatResponse> {
  const query = accessToken === null ? "" : `?token=${encodeURIComponent(accessToken)}`;
  const socket = new WebSocket(`${wsUrl}/api/v1/chat/stream${query}`);
  return new Promise<ChatResponse>((resolve, reject) => {
    socket.addEventListener("open", () => socket.send(JSON.stringify(request)));
    socket.addEventListener("message", (event: MessageEvent<string>) => {
      const frame = JSON.parse(event.data) as StreamFrame;
      if ("token" in frame) handlers.token(frame.token);
      else if ("done" in frame) resolve(frame);
      else if ("error" in frame) reject(new ApiError(0, frame.error, frame.message, frame.request_id ?? null, null, null));
      else if ("demo" in frame) handlers.demo?.();
    });
    socket.addEventListener("close", (event) => {
      // After `done` the promise is settled already; otherwise the socket was refused.
      reject(new Error(`chat stream closed (${event.code} ${event.reason})`));
    });
  });
}
