import { outboundTraceHeaders, readTraceContext } from '../../services/shared/trace-context.js';

describe('readTraceContext', () => {
  it('reads W3C traceparent', () => {
    expect(
      readTraceContext({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' }),
    ).toEqual({
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
      sampled: true,
    });
  });

  it("reads Google's X-Cloud-Trace-Context, converting the decimal span id to hex", () => {
    expect(
      readTraceContext({ 'x-cloud-trace-context': '105445aa7843bc8bf206b12000100000/1;o=1' }),
    ).toEqual({
      traceId: '105445aa7843bc8bf206b12000100000',
      spanId: '0000000000000001',
      sampled: true,
    });
    expect(
      readTraceContext({ 'x-cloud-trace-context': '105445aa7843bc8bf206b12000100000' }),
    ).toEqual({
      traceId: '105445aa7843bc8bf206b12000100000',
      sampled: false,
    });
  });

  it('takes a trace id that only starts or ends with zeros, in any case, with the spaces a client left', () => {
    for (const traceId of [
      '0000000000000000000000000000abcd',
      'abcd0000000000000000000000000000',
    ]) {
      expect(
        readTraceContext({ traceparent: ` 00-${traceId.toUpperCase()}-00F067AA0BA902B7-01 ` }),
      ).toEqual({
        traceId,
        spanId: '00f067aa0ba902b7',
        sampled: true,
      });
    }
    expect(
      readTraceContext({ 'x-cloud-trace-context': ' 105445aa7843bc8bf206b12000100000/1;o=1 ' })
        ?.traceId,
    ).toBe('105445aa7843bc8bf206b12000100000');
  });

  it('takes a Cloud Trace span id from 1 to 2^64 - 1, and leaves out one outside', () => {
    const spanOf = (span: string) =>
      readTraceContext({ 'x-cloud-trace-context': `105445aa7843bc8bf206b12000100000/${span};o=1` })
        ?.spanId;
    expect(spanOf('1')).toBe('0000000000000001');
    expect(spanOf('18446744073709551615')).toBe('ffffffffffffffff');
    expect(spanOf('0')).toBeUndefined();
    expect(spanOf('18446744073709551616')).toBeUndefined();
  });

  it('prefers traceparent when both are sent', () => {
    const trace = readTraceContext({
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00',
      'x-cloud-trace-context': '105445aa7843bc8bf206b12000100000/1;o=1',
    });
    expect(trace).toMatchObject({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', sampled: false });
  });

  it.each([
    [{}],
    [{ traceparent: 'garbage' }],
    [{ traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01' }],
    [{ 'x-cloud-trace-context': 'not-hex/1;o=1' }],
  ])('ignores what is absent or malformed: %j', (headers) => {
    expect(readTraceContext(headers)).toBeUndefined();
  });
});

describe('outboundTraceHeaders', () => {
  it('passes the trace on with a new span id, in both formats, and nothing else', () => {
    const out = outboundTraceHeaders({
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      authorization: 'Bearer secret',
      cookie: 'a=b',
    });
    expect(Object.keys(out).sort()).toEqual(['traceparent', 'x-cloud-trace-context']);
    const w3c = readTraceContext({ traceparent: out.traceparent });
    const google = readTraceContext({ 'x-cloud-trace-context': out['x-cloud-trace-context'] });
    expect(w3c).toEqual({
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: expect.stringMatching(/^[\da-f]{16}$/),
      sampled: true,
    });
    expect(w3c!.spanId).not.toBe('00f067aa0ba902b7');
    expect(google).toEqual(w3c);
  });

  it('keeps the sampling decision in both formats', () => {
    for (const [flags, sampled] of [
      ['01', '1'],
      ['00', '0'],
    ] as const) {
      const out = outboundTraceHeaders({
        traceparent: `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-${flags}`,
      });
      expect(out.traceparent).toMatch(
        new RegExp(`^00-4bf92f3577b34da6a3ce929d0e0e4736-[\\da-f]{16}-${flags}$`),
      );
      expect(out['x-cloud-trace-context']).toMatch(
        new RegExp(`^4bf92f3577b34da6a3ce929d0e0e4736/\\d+;o=${sampled}$`),
      );
    }
  });

  it('sends no trace when none came in', () => {
    expect(outboundTraceHeaders({ authorization: 'Bearer x' })).toEqual({});
  });
});
