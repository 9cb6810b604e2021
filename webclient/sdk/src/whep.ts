// WHEP playback: receive one participant's audio and video with a single
// HTTP exchange (POST the offer, get the answer), no signal connection.

/** Options of playWHEP. */
export interface WHEPOptions {
  /** The server's HTTP(S) origin, or its ws(s):// URL (converted). */
  url: string;
  /** An access token with roomJoin, the room and canSubscribe. */
  token: string;
  /** Identity of the participant to play. */
  participant: string;
  /** How long to gather ICE candidates before sending the offer (ms). */
  gatherTimeoutMs?: number;
  /** For tests: the fetch to use. */
  fetch?: typeof fetch;
  /** For tests: creates the peer connection. */
  newPeerConnection?: () => RTCPeerConnection;
}

/** A playing WHEP session. */
export interface WHEPSession {
  /** The received audio and video. */
  stream: MediaStream;
  pc: RTCPeerConnection;
  /** The session's resource URL (DELETE ends it). */
  resource: string;
  /**
   * stop ends the session with a DELETE and closes the connection; it
   * resolves to the DELETE's status (undefined if it could not be sent,
   * or if stop was called before).
   */
  stop(): Promise<number | undefined>;
}

/** WHEPError is a refusal by the server, with its status and reason. */
export class WHEPError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
  ) {
    super(`WHEP ${status}: ${reason}`);
    this.name = 'WHEPError';
  }
}

/** httpOrigin turns a ws(s):// server URL into its http(s):// origin. */
export function httpOrigin(url: string): string {
  return url.replace(/^ws(s?):\/\//, 'http$1://').replace(/\/+$/, '');
}

/** whepURL is the endpoint playing a participant. */
export function whepURL(url: string, participant: string): string {
  return `${httpOrigin(url)}/whep?${new URLSearchParams({ participant })}`;
}

/**
 * postOffer sends an offer to a WHEP endpoint: it returns the answer and
 * the resource URL, or throws a WHEPError with the server's reason.
 */
export async function postOffer(
  f: typeof fetch,
  endpoint: string,
  token: string,
  offer: string,
): Promise<{ answer: string; resource: string }> {
  const res = await f(endpoint, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/sdp' },
    body: offer,
  });
  const text = await res.text();
  if (res.status !== 201) throw new WHEPError(res.status, text.trim() || res.statusText);
  const location = res.headers.get('Location');
  if (!location) throw new WHEPError(res.status, 'the answer has no Location header');
  return { answer: text, resource: new URL(location, endpoint).toString() };
}

/** waitGathered resolves when ICE gathering completes, or after ms. */
function waitGathered(pc: RTCPeerConnection, ms: number): Promise<void> {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== 'complete') return;
      pc.removeEventListener('icegatheringstatechange', done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      pc.removeEventListener('icegatheringstatechange', done);
      resolve();
    }, ms);
    pc.addEventListener('icegatheringstatechange', done);
  });
}

/**
 * playWHEP plays a participant over WHEP: it offers to receive one audio
 * and one video track (candidates gathered first, no trickle), and
 * returns the stream they arrive on.
 */
export async function playWHEP(opts: WHEPOptions): Promise<WHEPSession> {
  const f = opts.fetch ?? fetch.bind(globalThis);
  const pc = opts.newPeerConnection?.() ?? new RTCPeerConnection();
  const stream = new MediaStream();
  pc.addEventListener('track', (e) => stream.addTrack(e.track));
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await waitGathered(pc, opts.gatherTimeoutMs ?? 2000);
    const offer = pc.localDescription?.sdp ?? '';
    const endpoint = whepURL(opts.url, opts.participant);
    const { answer, resource } = await postOffer(f, endpoint, opts.token, offer);
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    let stopped = false;
    const stop = async () => {
      if (stopped) return undefined;
      stopped = true;
      // DELETE before closing: the server ends a session whose
      // connection closes, and the DELETE would then find nothing.
      const init = { method: 'DELETE', headers: { Authorization: `Bearer ${opts.token}` }, keepalive: true };
      const res = await f(resource, init).catch(() => undefined);
      pc.close();
      return res?.status;
    };
    return { stream, pc, resource, stop };
  } catch (err) {
    pc.close();
    throw err;
  }
}
