import http, { type ClientRequest, type IncomingHttpHeaders } from 'node:http';

/**
 * The one HTTP client of the services: a GET to the metadata server, to Google's key server or to
 * the receiving service. Node's own http module, because it is the only client here that reports a
 * body cut short (node-fetch 2 waits for the rest of a Content-Length body until its timeout).
 */
interface HttpGetOptions {
  /** Whose sockets to use: keep-alive for the request path; an https.Agent, with its CA, for an https URL. */
  agent: http.Agent;
  headers?: Record<string, string>;
  /** Bound on the whole call, its one retry included. */
  timeoutMs: number;
  /** The largest body accepted, in bytes. */
  maxBytes: number;
}

export interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** What went wrong, for a caller to map onto its own answer. */
type HttpFailureKind = 'refused' | 'reset' | 'timeout' | 'too-large' | 'dns' | 'tls' | 'network';

export class HttpFailure extends Error {
  /** message: what the server did, to follow its name ("the key server at URL ..."). */
  constructor(
    readonly kind: HttpFailureKind,
    message: string,
    cause?: unknown,
  ) {
    super(message, { cause });
    this.name = 'HttpFailure';
  }
}

// Node's and OpenSSL's TLS codes; EPROTO is an https request answered by a plain-HTTP server.
const TLS_CODE = /CERT|^ERR_TLS_|^ERR_SSL_|^HOSTNAME_MISMATCH$|^UNABLE_TO_|^EPROTO$/;

/** A failure of the connection, in words: refused, reset, DNS, TLS, or the code when nothing better is known. */
function connectionFailure(err: unknown): HttpFailure {
  const code = (err as { code?: unknown }).code;
  const [kind, words]: [HttpFailureKind, string] =
    code === 'ECONNREFUSED'
      ? ['refused', 'the connection was refused']
      : code === 'ECONNRESET' || code === 'EPIPE'
        ? ['reset', 'the connection was reset']
        : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
          ? ['dns', 'its host name does not resolve']
          : typeof code === 'string' && TLS_CODE.test(code)
            ? ['tls', `TLS failed: ${code}`]
            : ['network', `a network error (${typeof code === 'string' ? code : 'no code'})`];
  return new HttpFailure(kind, `could not be reached (${words})`, err);
}

/**
 * GETs url and reads the whole body. Resolves with any status (redirects are not followed);
 * rejects with HttpFailure when no whole answer came: at once when the connection fails or the
 * body is cut short, after timeoutMs when the server is silent. A request that meets a kept-alive
 * connection the server had closed (reset before a byte of answer) is sent again once, on the
 * agent's next socket, as GET is safe to repeat.
 */
export function httpGet(url: URL, options: HttpGetOptions): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    let request: ClientRequest | undefined;
    let settled = false;
    const settle = (failure: HttpFailure | undefined, answer?: HttpAnswer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (failure === undefined) resolve(answer!);
      else {
        request?.destroy();
        reject(failure);
      }
    };
    const fail = (kind: HttpFailureKind, message: string, cause?: unknown) =>
      settle(new HttpFailure(kind, message, cause));
    const timer = setTimeout(
      () => fail('timeout', `did not answer within ${options.timeoutMs} ms`),
      options.timeoutMs,
    );
    const send = (mayRetry: boolean) => {
      let req: ClientRequest;
      try {
        // The agent decides http or https (an https.Agent makes TLS connections); Node refuses a URL of the other scheme.
        req = http.get(url, { agent: options.agent, headers: options.headers ?? {} });
      } catch (err) {
        // A header Node refuses to send (a control character in a value): nothing went out.
        const refused = `was not asked: Node refused the request (${(err as Error).message})`;
        return fail('network', refused, err);
      }
      request = req;
      // Bytes the socket had read before this request: any more, and the server began to answer.
      let readBefore = 0;
      req.once('socket', (socket) => (readBefore = socket.bytesRead));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size <= options.maxBytes) chunks.push(chunk);
          else fail('too-large', `answered more than ${Math.floor(options.maxBytes / 1024)} KB`);
        });
        res.on('end', () =>
          settle(undefined, {
            status: res.statusCode!,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
        // The connection closed before the whole body arrived (Content-Length or chunked alike).
        const cut = 'could not be reached (the connection was reset before the whole answer came)';
        res.on('error', (err) => fail('reset', cut, err));
      });
      req.on('error', (err) => {
        if (settled) return;
        const code = (err as { code?: unknown }).code;
        const answered = req.socket !== null && req.socket.bytesRead > readBefore;
        if (
          mayRetry &&
          !answered &&
          req.reusedSocket &&
          (code === 'ECONNRESET' || code === 'EPIPE')
        )
          send(false);
        else settle(connectionFailure(err));
      });
    };
    send(true);
  });
}
