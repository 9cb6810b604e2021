import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WHEPError, httpOrigin, postOffer, whepURL } from '../src/whep.js';

/** fakeFetch answers every request with one response and records the requests. */
function fakeFetch(status: number, body: string, headers: Record<string, string> = {}) {
  const calls: { url: string; init?: RequestInit }[] = [];
  const f = (async (url: string | URL | Request, init?: RequestInit) => {
    calls.push({ url: String(url), init });
    return new Response(status === 204 ? null : body, { status, headers });
  }) as typeof fetch;
  return { f, calls };
}

describe('WHEP client', () => {
  it('derives the endpoint from a ws:// or http:// server URL', () => {
    assert.equal(httpOrigin('ws://localhost:7880'), 'http://localhost:7880');
    assert.equal(httpOrigin('wss://sfu.example/'), 'https://sfu.example');
    assert.equal(whepURL('ws://h:1', 'studio 1'), 'http://h:1/whep?participant=studio+1');
  });

  it('posts the offer with the token and resolves the resource', async () => {
    const { f, calls } = fakeFetch(201, 'v=0 answer', { Location: '/whep/abc', 'Content-Type': 'application/sdp' });
    const got = await postOffer(f, 'http://h:1/whep?participant=p', 'tok', 'v=0 offer');
    assert.deepEqual(got, { answer: 'v=0 answer', resource: 'http://h:1/whep/abc' });
    const headers = calls[0].init?.headers as Record<string, string>;
    assert.equal(calls[0].init?.method, 'POST');
    assert.equal(headers.Authorization, 'Bearer tok');
    assert.equal(headers['Content-Type'], 'application/sdp');
    assert.equal(calls[0].init?.body, 'v=0 offer');
  });

  it('turns a refusal into a WHEPError with the server reason', async () => {
    const { f } = fakeFetch(404, '"nobody" is not in room "demo"\n');
    await assert.rejects(postOffer(f, 'http://h:1/whep?participant=nobody', 'tok', 'v=0'), (err: unknown) => {
      assert.ok(err instanceof WHEPError);
      assert.equal(err.status, 404);
      assert.equal(err.reason, '"nobody" is not in room "demo"');
      return true;
    });
  });

  it('refuses a 201 without a Location', async () => {
    const { f } = fakeFetch(201, 'v=0');
    await assert.rejects(postOffer(f, 'http://h:1/whep?participant=p', 'tok', 'v=0'), /no Location/);
  });
});
