// node-uwsgi's own Response: a Response to every caller (instanceof, statics, body methods), validated as the
// Fetch standard's constructor validates, with its parts kept for the fetch adapter until something needs more.
import { describe, expect, it } from 'vitest';
import { lightParts, Response } from '../../src/interfaces/fetch-response.js';

describe('Response (light)', () => {
  it('is a Response: instanceof, name, status, ok, statusText, headers with the default content type', () => {
    const res = new Response('hi', { status: 201, statusText: 'Made', headers: { 'X-A': '1' } });
    expect(res).toBeInstanceOf(globalThis.Response);
    expect(res).toBeInstanceOf(Response);
    expect(new globalThis.Response('x')).toBeInstanceOf(Response);
    expect(res.constructor.name).toBe('Response');
    expect(Object.prototype.toString.call(res)).toBe('[object Response]');
    expect([res.status, res.ok, res.statusText]).toEqual([201, true, 'Made']);
    expect(lightParts(res)?.body).toBe('hi');
    expect([...res.headers]).toEqual([
      ['content-type', 'text/plain;charset=UTF-8'],
      ['x-a', '1'],
    ]);
    // Reading the headers keeps it light: the adapter writes the Headers as they are then.
    expect(lightParts(res)?.headers).toBe(res.headers);
  });

  it('copies bytes at construction, as the standard does: the app may reuse its buffer', async () => {
    const bytes = new Uint8Array([104, 105]);
    const res = new Response(bytes);
    bytes[0] = 120;
    expect(Buffer.from(lightParts(res)!.body as Uint8Array).toString()).toBe('hi');
    expect(await res.text()).toBe('hi');
  });

  it('answers body, text(), json(), clone() and bytes from a real Response made on first use', async () => {
    const res = new Response('{"a":1}', { headers: [['content-type', 'application/json']] });
    expect(res.bodyUsed).toBe(false);
    expect(lightParts(res)).toBeUndefined();
    const copy = res.clone();
    expect(copy).toBeInstanceOf(globalThis.Response);
    expect(await res.json()).toEqual({ a: 1 });
    expect(res.bodyUsed).toBe(true);
    expect(await copy.text()).toBe('{"a":1}');
    expect(res.headers.get('content-type')).toBe('application/json');
    const bytes = new Response(new Uint8Array([1, 2, 3]));
    expect(new Uint8Array(await bytes.arrayBuffer())).toEqual(new Uint8Array([1, 2, 3]));
    expect(bytes.headers.has('content-type')).toBe(false);
    expect(await new Response(null, { status: 204 }).text()).toBe('');
  });

  it('keeps headers changed after construction when the real Response is made', async () => {
    const res = new Response('x');
    res.headers.set('x-late', 'yes');
    expect(res.type).toBe('default');
    expect(res.headers.get('x-late')).toBe('yes');
    expect(await res.text()).toBe('x');
  });

  it('throws what the standard constructor throws, at construction', () => {
    expect(() => new Response('x', { status: 99 })).toThrow(RangeError);
    expect(() => new Response('x', { status: 600 })).toThrow(RangeError);
    expect(() => new Response('x', { status: 204 })).toThrow(TypeError);
    expect(() => new Response('x', { statusText: 'bad\nline' })).toThrow(TypeError);
    expect(() => new Response('x', { headers: null as unknown as Record<string, string> })).toThrow(TypeError);
    expect(() => new Response('x', { headers: 'a: 1' as unknown as Record<string, string> })).toThrow(TypeError);
    expect(() => new Response('x', { headers: { 'bad name': '1' } as Record<string, string> })).not.toThrow();
    // @ts-expect-error: called without new
    expect(() => Response('x')).toThrow(TypeError);
  });

  it('passes other bodies and the statics to the standard Response', async () => {
    const stream = new Response(new ReadableStream({ start: (c) => (c.enqueue(new Uint8Array([65])), c.close()) }));
    expect(lightParts(stream)).toBeUndefined();
    expect(await stream.text()).toBe('A');
    const json = Response.json({ b: 2 });
    expect(json).toBeInstanceOf(globalThis.Response);
    expect(await json.json()).toEqual({ b: 2 });
    expect(Response.redirect('http://example.test/', 302).headers.get('location')).toBe('http://example.test/');
  });
});
