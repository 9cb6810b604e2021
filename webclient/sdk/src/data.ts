import { DataPacket, DataPacket_Kind, UserPacket } from '@livekit/protocol';
import type { DataKind } from './types.js';

/** Options of a data message. */
export interface SendDataOptions {
  /** Reliable (default) or lossy delivery. */
  kind?: DataKind;
  /** A topic the receivers can filter on. */
  topic?: string;
  /** Only these identities receive it (default: everyone in the room). */
  destinationIdentities?: string[];
}

/** encodeUserData builds the DataPacket bytes of a user message. */
export function encodeUserData(payload: Uint8Array, opts: SendDataOptions = {}): Uint8Array {
  const dests = opts.destinationIdentities ?? [];
  const pkt = new DataPacket({
    kind: opts.kind === 'lossy' ? DataPacket_Kind.LOSSY : DataPacket_Kind.RELIABLE,
    destinationIdentities: dests,
    value: {
      case: 'user',
      value: new UserPacket({ payload, topic: opts.topic, destinationIdentities: dests }),
    },
  });
  return pkt.toBinary();
}

/** A user message received from the room. */
export interface ReceivedData {
  /** The message bytes. */
  payload: Uint8Array;
  /** Its topic, if any. */
  topic: string | undefined;
  /** The sender's identity ("" when the server sent it). */
  senderIdentity: string;
  /** The sender's sid ("" when the server sent it). */
  senderSid: string;
  /** How it travelled. */
  kind: DataKind;
}

/** decodeUserData parses a received DataPacket; undefined unless it carries a user message. */
export function decodeUserData(bytes: Uint8Array, label: string): ReceivedData | undefined {
  let pkt: DataPacket;
  try {
    pkt = DataPacket.fromBinary(bytes);
  } catch {
    return undefined;
  }
  if (pkt.value.case !== 'user') return undefined;
  const u = pkt.value.value;
  return {
    payload: u.payload,
    topic: u.topic,
    senderIdentity: u.participantIdentity || pkt.participantIdentity,
    senderSid: u.participantSid || pkt.participantSid,
    kind: label === '_lossy' || pkt.kind === DataPacket_Kind.LOSSY ? 'lossy' : 'reliable',
  };
}
