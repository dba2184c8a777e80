// The benchmark's users and conversations, created through the public API: a fixed number of
// accounts (each signs in once; a token stands for one user's device), one small group per
// sending client, and one large "hot" group that every sending client writes to.
import type { HttpClient } from './http-client.ts';

/** A signed-in account. */
export interface BenchUser {
  id: string;
  username: string;
  token: string;
}

/** A conversation with its sender and the members who only receive. */
export interface BenchConversation {
  id: string;
  sender: BenchUser;
  receivers: BenchUser[];
}

// Sign-ups and sign-ins cost a scrypt hash each on the server; a few at a time keep it busy
// without queueing hundreds of requests.
const signUpConcurrency = 8;
const password = 'bench-password-1';

async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  async function worker(): Promise<void> {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!, index);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Registers and signs in `count` accounts named `<prefix>NNN`. */
export async function createUsers(client: HttpClient, count: number, prefix: string): Promise<BenchUser[]> {
  const names = Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(4, '0')}`);
  return mapLimited(names, signUpConcurrency, async (username) => {
    const account = await client.json<{ id: string }>('POST', '/v1/accounts', 201, { body: { username, password } });
    const session = await client.json<{ token: string }>('POST', '/v1/sessions', 201, { body: { username, password } });
    return { id: String(account.id), username, token: session.token };
  });
}

/** Creates a group per sender, `receiversEach` other members in each; receivers are not senders. */
export async function createGroups(client: HttpClient, senders: readonly BenchUser[], receivers: readonly BenchUser[], receiversEach: number): Promise<BenchConversation[]> {
  if (receivers.length < senders.length * receiversEach) {
    throw new Error(`Cannot create ${senders.length} groups of ${receiversEach} receivers from ${receivers.length} receiving accounts`);
  }
  return mapLimited(senders, signUpConcurrency, async (sender, i) => {
    const members = receivers.slice(i * receiversEach, (i + 1) * receiversEach);
    const created = await client.json<{ id: string }>('POST', '/v1/conversations', 201, {
      token: sender.token,
      body: { kind: 'group', title: `bench ${i}`, members: members.map((m) => m.username) },
    });
    return { id: String(created.id), sender, receivers: members };
  });
}

/** One group holding every user in `members`; the first creates it. */
export async function createHotGroup(client: HttpClient, members: readonly BenchUser[]): Promise<string> {
  const [creator, ...others] = members;
  if (!creator) throw new Error('Cannot create the hot conversation without members');
  const created = await client.json<{ id: string }>('POST', '/v1/conversations', 201, {
    token: creator.token,
    body: { kind: 'group', title: 'bench hot', members: others.map((m) => m.username) },
  });
  return String(created.id);
}
