// What an Electron renderer does with the API, as plain browser code: `fetch` for REST,
// the browser's WebSocket for streaming chat. Each flow returns what the page observed;
// tests/clients/drive.mjs runs them in Chromium and the Python test judges the result.
"use strict";

(() => {
  // Every wait is bounded: a flow that gets no answer fails with what it waited for.
  const BOUND_MS = 30000;
  const PASSWORD = "correct horse battery staple";
  const REQUEST = {
    message: "add a task to call Anna tomorrow, high priority",
    context: {
      today: "2026-11-18",
      projects: [{ id: "p1", name: "Website relaunch" }],
      tasks: [{ id: "t1", title: "Write website copy", due_date: "2026-11-18" }],
    },
  };

  function within(promise, what) {
    let timer;
    const bound = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer in ${BOUND_MS} ms`)), BOUND_MS);
    });
    return Promise.race([promise, bound]).finally(() => clearTimeout(timer));
  }

  async function outcome(request) {
    try {
      const response = await within(request, "fetch");
      return { status: response.status };
    } catch (error) {
      return { failed: error.name, message: error.message };
    }
  }

  async function postJson(api, path, body, init = {}) {
    return within(
      fetch(`${api}${path}`, {
        ...init,
        method: "POST",
        headers: { "Content-Type": "application/json", ...(init.headers || {}) },
        body: JSON.stringify(body),
      }),
      `POST ${path}`,
    );
  }

  async function signIn(api) {
    const email = `page-${crypto.randomUUID()}@example.com`;
    const registered = await postJson(api, "/api/v1/auth/register", { email, password: PASSWORD });
    const login = await postJson(api, "/api/v1/auth/login", { email, password: PASSWORD });
    const tokens = await login.json();
    return { registerStatus: registered.status, loginStatus: login.status, token: tokens.access_token };
  }

  // One chat over the WebSocket; the time to the first token is taken from `send()`.
  function streamChat(ws, token, request) {
    const query = token ? `?token=${encodeURIComponent(token)}` : "";
    const seen = {
      opened: false,
      errorEvent: false,
      tokens: 0,
      text: "",
      demoMarker: false,
      firstTokenMs: null,
      doneMs: null,
      done: null,
      errorFrame: null,
      closeCode: null,
      closeReason: null,
    };
    return within(
      new Promise((resolve) => {
        const socket = new WebSocket(`${ws}/api/v1/chat/stream${query}`);
        let sentAt = 0;
        socket.onopen = () => {
          seen.opened = true;
          sentAt = performance.now();
          socket.send(JSON.stringify(request));
        };
        socket.onmessage = (event) => {
          const frame = JSON.parse(event.data);
          if ("token" in frame) {
            if (seen.firstTokenMs === null) seen.firstTokenMs = performance.now() - sentAt;
            seen.tokens += 1;
            seen.text += frame.token;
          } else if (frame.done) {
            seen.doneMs = performance.now() - sentAt;
            seen.done = frame;
          } else if (frame.error) {
            seen.errorFrame = frame;
          } else if (frame.demo) {
            seen.demoMarker = true;
          }
        };
        socket.onerror = () => {
          seen.errorEvent = true;
        };
        socket.onclose = (event) => {
          seen.closeCode = event.code;
          seen.closeReason = event.reason;
          resolve(seen);
        };
      }),
      "chat stream",
    );
  }

  window.flows = {
    // A page on another origin: sign in with fetch, stream a chat, then chat over REST
    // until the daily quota refuses, and read what the refusal says.
    async signedIn({ api, ws }) {
      const account = await signIn(api);
      const auth = { Authorization: `Bearer ${account.token}` };
      const me = await within(fetch(`${api}/api/v1/auth/me`, { headers: auth }), "GET /auth/me");
      const stream = await streamChat(ws, account.token, REQUEST);
      const chats = [];
      let refusal = null;
      for (let attempt = 0; attempt < 5 && refusal === null; attempt += 1) {
        const response = await postJson(api, "/api/v1/chat", REQUEST, { headers: auth });
        if (response.status === 429) {
          const error = await response.json();
          refusal = {
            status: response.status,
            quotaReset: response.headers.get("X-Quota-Reset"),
            retryAfter: response.headers.get("Retry-After"),
            requestId: response.headers.get("X-Request-ID"),
            error: error.error,
            message: error.message,
          };
        } else {
          chats.push({ status: response.status, demoMode: response.headers.get("X-Demo-Mode") });
        }
      }
      return {
        registerStatus: account.registerStatus,
        loginStatus: account.loginStatus,
        meStatus: me.status,
        meRequestId: me.headers.get("X-Request-ID"),
        meRateLimitRemaining: me.headers.get("RateLimit-Remaining"),
        stream,
        chats,
        refusal,
      };
    },

    // An anonymous visitor on a same-site origin: the first response sets the cookie,
    // and the next requests are the same visitor even when their fingerprint differs.
    async anonymousVisitor({ api }) {
      const chat = await postJson(api, "/api/v1/chat", REQUEST, {
        credentials: "include",
        headers: { "Accept-Language": "en" },
      });
      const status = async (credentials) => {
        const response = await within(
          fetch(`${api}/api/v1/quota/status`, { credentials, headers: { "Accept-Language": "de" } }),
          "GET /quota/status",
        );
        return (await response.json()).daily.used;
      };
      return {
        chatStatus: chat.status,
        usedWithCookie: await status("include"),
        usedWithoutCookie: await status("omit"),
      };
    },

    // A page from an origin the API does not list.
    async notAllowed({ api, ws }) {
      return {
        simpleGet: await outcome(fetch(`${api}/api/v1/health`)),
        jsonPost: await outcome(postJson(api, "/api/v1/auth/login", { email: "a@example.com", password: PASSWORD })),
        stream: await streamChat(ws, null, REQUEST),
      };
    },

    // A renderer loaded from a file (Origin: null): bearer credentials only.
    async fileRenderer({ api, ws }) {
      const account = await signIn(api);
      const stream = await streamChat(ws, account.token, REQUEST);
      const bearer = await within(
        fetch(`${api}/api/v1/quota/status`, { headers: { Authorization: `Bearer ${account.token}` } }),
        "GET /quota/status",
      );
      const quota = await bearer.json();
      return {
        registerStatus: account.registerStatus,
        loginStatus: account.loginStatus,
        stream,
        quotaIdentity: quota.identity,
        quotaUsed: quota.daily.used,
        credentialed: await outcome(fetch(`${api}/api/v1/quota/status`, { credentials: "include" })),
      };
    },
  };
})();
