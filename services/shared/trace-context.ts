import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/** The trace a request belongs to, from the headers Cloud Run sends. */
interface TraceContext {
  /** 32 hex characters. */
  traceId: string;
  /** 16 hex characters, as Cloud Logging wants it. */
  spanId?: string;
  sampled: boolean;
}

const TRACEPARENT = /^[\da-f]{2}-([\da-f]{32})-([\da-f]{16})-([\da-f]{2})$/;
const CLOUD_TRACE = /^([\da-f]{32})(?:\/(\d{1,20}))?(?:;o=([01]))?$/i;

/** W3C traceparent wins; else Google's X-Cloud-Trace-Context (TRACE_ID/SPAN_ID;o=1, span in decimal). */
export function readTraceContext(headers: IncomingHttpHeaders): TraceContext | undefined {
  const traceparent = single(headers.traceparent);
  const w3c = traceparent === undefined ? null : TRACEPARENT.exec(traceparent.trim().toLowerCase());
  if (w3c && !/^0+$/.test(w3c[1]!)) {
    return { traceId: w3c[1]!, spanId: w3c[2]!, sampled: (Number.parseInt(w3c[3]!, 16) & 1) === 1 };
  }
  const cloud = single(headers['x-cloud-trace-context']);
  const google = cloud === undefined ? null : CLOUD_TRACE.exec(cloud.trim());
  if (google) {
    const span = google[2] === undefined ? undefined : BigInt(google[2]);
    return {
      traceId: google[1]!.toLowerCase(),
      ...(span !== undefined && span > 0n && span < 2n ** 64n
        ? { spanId: span.toString(16).padStart(16, '0') }
        : {}),
      sampled: google[3] === '1',
    };
  }
  return undefined;
}

/**
 * The trace headers for a call to the next service: the same trace, with a new span id for the
 * call (its parent is this request's span), in both formats Cloud Run understands.
 */
export function outboundTraceHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const trace = readTraceContext(headers);
  if (trace === undefined) return {};
  const span = randomBytes(8);
  span[0] = (span[0]! & 0x7f) | 0x01; // non-zero, and below 2^63 for the decimal form
  const flags = trace.sampled ? '01' : '00';
  return {
    traceparent: `00-${trace.traceId}-${span.toString('hex')}-${flags}`,
    'x-cloud-trace-context': `${trace.traceId}/${BigInt(`0x${span.toString('hex')}`)};o=${trace.sampled ? 1 : 0}`,
  };
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
