// The drill's checker, pure: what the clients were told (acknowledged sends) against what the
// conversations hold at the end. It proves DESIGN.md's invariants 1–3 for one run: every
// acknowledged message is stored (acknowledged means durable), once per clientMessageId (exactly
// once), with the seq it was acknowledged with, and each conversation's seqs run 1, 2, 3, … with no
// gap. A stored message nobody was told of (an answer lost in a failover) is allowed and counted:
// its sender retries with the same clientMessageId and is answered with it.

/** One acknowledgement a client received. */
export interface Acknowledged {
  conversationId: string;
  clientMessageId: string;
  messageId: string;
  seq: number;
}

/** One message as the conversation's history holds it. */
export interface Stored {
  id: string;
  seq: number;
  senderId: string;
  clientMessageId: string;
}

export interface CheckResult {
  acknowledged: number;
  stored: number;
  /** Acknowledged, but not in the history. */
  lost: Acknowledged[];
  /** A clientMessageId stored more than once (per sender). */
  duplicated: Array<{ conversationId: string; clientMessageId: string; count: number }>;
  /** Acknowledged with one seq or id, stored with another. */
  mismatched: Array<{ conversationId: string; clientMessageId: string; acknowledged: { id: string; seq: number }; stored: { id: string; seq: number } }>;
  /** Where a conversation's seqs do not run 1, 2, 3, …: the seq expected and the one found. */
  gaps: Array<{ conversationId: string; expected: number; found: number }>;
  /** Stored but never acknowledged to anyone (allowed: an answer lost on the way). */
  unacknowledged: number;
}

/** Checks every conversation of `histories` against `acknowledged`. */
export function checkRun(acknowledged: readonly Acknowledged[], histories: ReadonlyMap<string, readonly Stored[]>): CheckResult {
  const result: CheckResult = { acknowledged: acknowledged.length, stored: 0, lost: [], duplicated: [], mismatched: [], gaps: [], unacknowledged: 0 };
  const byClientId = new Map<string, Map<string, Stored>>();
  for (const [conversationId, messages] of histories) {
    result.stored += messages.length;
    const ordered = [...messages].sort((a, b) => a.seq - b.seq);
    let expected = 1;
    for (const message of ordered) {
      if (message.seq !== expected) result.gaps.push({ conversationId, expected, found: message.seq });
      expected = message.seq + 1;
    }
    const counts = new Map<string, number>();
    const first = new Map<string, Stored>();
    for (const message of ordered) {
      const key = `${message.senderId}/${message.clientMessageId}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
      if (!first.has(message.clientMessageId)) first.set(message.clientMessageId, message);
    }
    for (const [key, count] of counts) if (count > 1) result.duplicated.push({ conversationId, clientMessageId: key.slice(key.indexOf('/') + 1), count });
    byClientId.set(conversationId, first);
  }
  const told = new Set<string>();
  for (const ack of acknowledged) {
    told.add(`${ack.conversationId}/${ack.clientMessageId}`);
    const stored = byClientId.get(ack.conversationId)?.get(ack.clientMessageId);
    if (!stored) {
      result.lost.push(ack);
      continue;
    }
    if (stored.id !== ack.messageId || stored.seq !== ack.seq) {
      result.mismatched.push({ conversationId: ack.conversationId, clientMessageId: ack.clientMessageId, acknowledged: { id: ack.messageId, seq: ack.seq }, stored: { id: stored.id, seq: stored.seq } });
    }
  }
  for (const [conversationId, messages] of byClientId) for (const clientMessageId of messages.keys()) if (!told.has(`${conversationId}/${clientMessageId}`)) result.unacknowledged += 1;
  return result;
}

/** Whether the run kept invariants 1–3. */
export function checkPassed(result: CheckResult): boolean {
  return result.lost.length === 0 && result.duplicated.length === 0 && result.mismatched.length === 0 && result.gaps.length === 0;
}
