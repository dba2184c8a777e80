// Opening an authenticated /v1/stream socket and waiting for the server's first frame, which
// API.md promises is `{type: "status"}`: only then is the socket subscribed to live events.
import WebSocket from 'ws';

/** Opens a socket with `token`; resolves once its `status` frame arrived, rejects after `timeoutMs`. */
export function openStream(wsBaseUrl: string, token: string, timeoutMs: number): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${wsBaseUrl}/v1/stream?token=${encodeURIComponent(token)}`, { perMessageDeflate: false, handshakeTimeout: timeoutMs });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no status frame within ${timeoutMs} ms`));
    }, timeoutMs);
    ws.once('message', (data) => {
      clearTimeout(timer);
      let type: unknown;
      try {
        type = (JSON.parse(data.toString()) as { type?: unknown }).type;
      } catch {
        type = undefined;
      }
      if (type === 'status') resolve(ws);
      else {
        ws.terminate();
        reject(new Error(`first frame was not {type:"status"}: ${data.toString().slice(0, 120)}`));
      }
    });
    ws.once('error', (error) => {
      clearTimeout(timer);
      ws.terminate();
      reject(error);
    });
    ws.once('unexpected-response', (_request, response) => {
      clearTimeout(timer);
      ws.terminate();
      reject(new Error(`upgrade refused with HTTP ${response.statusCode}`));
    });
  });
}
