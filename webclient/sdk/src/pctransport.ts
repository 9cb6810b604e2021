/** How long an offer waits for the server's answer. */
const answerTimeoutMs = 15000;
/** How long ICE may stay "disconnected" before the connection counts as lost. */
const disconnectedGraceMs = 5000;

/**
 * PCTransport is one RTCPeerConnection with the bookkeeping signaling
 * needs: remote candidates wait for the remote description, negotiations
 * run one at a time, and a failed connection is reported once.
 */
export class PCTransport {
  /** The peer connection. */
  readonly pc: RTCPeerConnection;
  /** Called with each local ICE candidate, to trickle to the server. */
  onCandidate: (c: RTCIceCandidateInit) => void = () => {};
  /** Called once when the connection failed (or stayed disconnected). */
  onFailed: (reason: string) => void = () => {};
  /** Called when the connection state changes. */
  onState: (s: RTCPeerConnectionState) => void = () => {};

  private queued: RTCIceCandidateInit[] = [];
  private chain: Promise<unknown> = Promise.resolve();
  private failed = false;
  private closed = false;
  private graceTimer: ReturnType<typeof setTimeout> | undefined;
  private offerId = 0;
  private waiting = new Map<number, (sdp: string) => void>();
  private negLoop: Promise<void> | undefined;
  private negDirty = false;

  /** Creates the peer connection. */
  constructor(
    readonly name: string,
    config: RTCConfiguration,
    factory: (c: RTCConfiguration) => RTCPeerConnection = (c) => new RTCPeerConnection(c),
  ) {
    this.pc = factory(config);
    this.pc.onicecandidate = (ev) => {
      if (ev.candidate && ev.candidate.candidate) this.onCandidate(ev.candidate.toJSON());
    };
    this.pc.onconnectionstatechange = () => this.stateChanged();
  }

  /** Whether the peer connection has been negotiated at least once. */
  get negotiated(): boolean {
    return this.pc.remoteDescription !== null;
  }

  private stateChanged(): void {
    const s = this.pc.connectionState;
    this.onState(s);
    if (this.graceTimer !== undefined) {
      clearTimeout(this.graceTimer);
      this.graceTimer = undefined;
    }
    if (s === 'failed') this.fail(`${this.name} connection failed`);
    if (s === 'disconnected') {
      this.graceTimer = setTimeout(() => {
        if (this.pc.connectionState === 'disconnected') this.fail(`${this.name} connection lost`);
      }, disconnectedGraceMs);
    }
  }

  private fail(reason: string): void {
    if (this.failed || this.closed) return;
    this.failed = true;
    this.onFailed(reason);
  }

  /** Adds a candidate from the server, or keeps it until the remote description is set. */
  addCandidate(c: RTCIceCandidateInit): void {
    if (!this.pc.remoteDescription) {
      this.queued.push(c);
      return;
    }
    this.pc.addIceCandidate(c).catch((err) => console.warn(`fanout: ${this.name} candidate`, err));
  }

  private async setRemote(desc: RTCSessionDescriptionInit): Promise<void> {
    await this.pc.setRemoteDescription(desc);
    const queued = this.queued;
    this.queued = [];
    for (const c of queued) {
      await this.pc.addIceCandidate(c).catch((err) => console.warn(`fanout: ${this.name} candidate`, err));
    }
  }

  /** Applies the server's offer and returns our answer (subscriber side). */
  answer(sdp: string): Promise<RTCSessionDescriptionInit> {
    const run = async () => {
      await this.setRemote({ type: 'offer', sdp });
      const answer = await this.pc.createAnswer();
      await this.pc.setLocalDescription(answer);
      return this.pc.localDescription?.toJSON() ?? answer;
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }

  /**
   * Negotiates (publisher side): offers, sends the offer with send, and
   * applies the answer passed to answerReceived. Calls made while a round
   * runs are folded into one more round.
   */
  negotiate(send: (sdp: string, id: number) => void): Promise<void> {
    this.negDirty = true;
    if (!this.negLoop) {
      this.negLoop = (async () => {
        try {
          while (this.negDirty && !this.closed) {
            this.negDirty = false;
            await this.offerRound(send);
          }
        } finally {
          this.negLoop = undefined;
        }
      })();
    }
    return this.negLoop;
  }

  private async offerRound(send: (sdp: string, id: number) => void): Promise<void> {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    const id = ++this.offerId;
    const answer = new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`${this.name}: no answer to offer ${id}`));
      }, answerTimeoutMs);
      this.waiting.set(id, (sdp) => {
        clearTimeout(t);
        resolve(sdp);
      });
    });
    send(this.pc.localDescription?.sdp ?? offer.sdp ?? '', id);
    await this.setRemote({ type: 'answer', sdp: await answer });
  }

  /** Delivers the server's answer to the offer with this id (0: the latest). */
  answerReceived(sdp: string, id: number): void {
    const key = id || this.offerId;
    const resolve = this.waiting.get(key);
    if (!resolve) return;
    this.waiting.delete(key);
    resolve(sdp);
  }

  /** Closes the peer connection. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.graceTimer !== undefined) clearTimeout(this.graceTimer);
    this.pc.onicecandidate = null;
    this.pc.onconnectionstatechange = null;
    this.pc.ontrack = null;
    this.pc.ondatachannel = null;
    try {
      this.pc.close();
    } catch {
      // already closed
    }
  }
}
