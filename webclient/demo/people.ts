// The participant list of the demo room page, with speaking indicators.
import { LocalParticipant, type Participant } from '../sdk/src/index.js';
import { el, hue, icons, initials } from './common.js';

/** ParticipantList renders who is in the room and who is speaking. */
export class ParticipantList {
  private items = new Map<string, HTMLElement>();

  /** Creates a list drawing into ul, with the head count in count. */
  constructor(
    private readonly ul: HTMLElement,
    private readonly count: HTMLElement,
  ) {}

  /** Adds or updates a participant's entry. */
  upsert(p: Participant): void {
    let li = this.items.get(p.identity);
    const local = p instanceof LocalParticipant;
    if (!li) {
      li = el(
        'li',
        { 'data-testid': 'participant', 'data-identity': p.identity, 'data-local': String(local) },
        el('span', { class: 'dot' }),
        el('span', { class: 'who' }),
        el('span', { class: 'bars', title: 'Speaking' }, el('i'), el('i'), el('i')),
        el('span', { class: 'state' }),
      );
      li.style.setProperty('--hue', String(hue(p.identity)));
      if (local) this.ul.prepend(li);
      else this.ul.append(li);
      this.items.set(p.identity, li);
    }
    const label = p.name || p.identity;
    (li.querySelector('.dot') as HTMLElement).textContent = initials(label);
    (li.querySelector('.who') as HTMLElement).textContent = local ? `${label} (you)` : label;
    const mic = local ? p.findBySource('microphone') : p.getTrackPublication('microphone');
    const state = li.querySelector('.state') as HTMLElement;
    const micMuted = !mic || mic.muted;
    state.innerHTML = micMuted ? icons.micOff : icons.mic;
    state.title = micMuted ? 'Microphone off' : 'Microphone on';
    li.dataset.audioMuted = String(micMuted);
    li.dataset.speaking = String(p.isSpeaking);
    this.count.textContent = String(this.items.size);
  }

  /** Removes a participant's entry. */
  remove(p: Participant): void {
    this.items.get(p.identity)?.remove();
    this.items.delete(p.identity);
    this.count.textContent = String(this.items.size);
  }

  /** Marks the active speakers. */
  setSpeakers(speakers: readonly Participant[]): void {
    const ids = new Set(speakers.map((s) => s.identity));
    for (const [id, li] of this.items) li.dataset.speaking = String(ids.has(id));
  }

  /** Empties the list. */
  clear(): void {
    for (const li of this.items.values()) li.remove();
    this.items.clear();
    this.count.textContent = '0';
  }
}
