// Request and response schemas (zod). The same objects validate requests and generate
// /v1/openapi.json, so the document cannot drift from what the server accepts.
import { z } from 'zod';
import { historyPageMax, messageBodyMax, syncPageMax } from '../chat/chat.ts';

const noNul = (value: string) => !value.includes('\u0000');
const text = (min: number, max: number, what: string) =>
  z
    .string()
    .refine((v) => [...v].length >= min, { message: `${what} must be at least ${min} character${min === 1 ? '' : 's'}` })
    .refine((v) => [...v].length <= max, { message: `${what} must be at most ${max} characters` })
    .refine(noNul, { message: `${what} must not contain NUL characters` });

const digits = (what: string) =>
  z
    .string()
    .regex(/^\d{1,15}$/, `${what} must be a whole number`)
    .transform(Number);

export const idSchema = z.string().describe('Opaque identifier');

export const accountSchema = z.object({ id: idSchema, username: z.string(), displayName: z.string() });

export const createAccountBody = z.strictObject({
  username: z.string().regex(/^[a-z0-9_.-]{3,32}$/, 'username must be 3–32 characters of a-z, 0-9, _, . and -'),
  password: z
    .string()
    .min(8, 'password must be at least 8 characters')
    .max(200, 'password must be at most 200 characters')
    .refine(noNul, { message: 'password must not contain NUL characters' }),
  displayName: text(1, 64, 'displayName').optional(),
});

export const createSessionBody = z.strictObject({
  username: z.string().max(64, 'username must be at most 64 characters'),
  password: z.string().max(200, 'password must be at most 200 characters'),
});

export const sessionSchema = z.object({ token: z.string(), account: accountSchema });

export const messageSchema = z.object({
  id: idSchema,
  conversationId: idSchema,
  seq: z.number().int(),
  senderId: idSchema,
  clientMessageId: z.uuid(),
  body: z.string(),
  sentAt: z.string().describe('ISO 8601 time'),
});

export const conversationSchema = z.object({
  id: idSchema,
  kind: z.enum(['direct', 'group']),
  title: z.string().nullable(),
  members: z.array(accountSchema),
  lastSeq: z.number().int(),
  createdAt: z.string(),
});

export const conversationListSchema = z.object({
  conversations: z.array(
    conversationSchema.extend({ lastReadSeq: z.number().int(), unread: z.number().int(), lastMessage: messageSchema.optional() }),
  ),
});

export const createConversationBody = z.strictObject({
  kind: z.enum(['direct', 'group']),
  members: z.array(z.string().max(64)).min(1, 'members must name at least one other account').max(256),
  title: text(1, 200, 'title').optional(),
});

export const conversationParams = z.strictObject({ id: z.string().max(40) });

export const sendMessageBody = z.strictObject({
  clientMessageId: z.uuid('clientMessageId must be a UUID'),
  body: text(1, messageBodyMax, 'body'),
});

export const sendMessageAnswer = z.object({ message: messageSchema });

export const historyQuery = z.strictObject({
  afterSeq: digits('afterSeq').optional(),
  beforeSeq: digits('beforeSeq').optional(),
  limit: digits('limit')
    .refine((n) => n >= 1 && n <= historyPageMax, { message: `limit must be between 1 and ${historyPageMax}` })
    .optional(),
});

export const historyAnswer = z.object({ messages: z.array(messageSchema), hasMore: z.boolean() });

export const readBody = z.strictObject({ seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER) });

export const chatEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('message'), message: messageSchema }),
  z.object({ type: z.literal('read'), conversationId: idSchema, accountId: idSchema, seq: z.number().int() }),
  z.object({ type: z.literal('conversation'), conversation: conversationSchema }),
]);

export const syncQuery = z.strictObject({
  cursor: z.string().max(200).optional(),
  limit: digits('limit')
    .refine((n) => n >= 1 && n <= syncPageMax, { message: `limit must be between 1 and ${syncPageMax}` })
    .optional(),
});

export const syncAnswer = z.object({ events: z.array(chatEventSchema), cursor: z.string(), hasMore: z.boolean() });

export const problemSchema = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  code: z.string(),
});

export const healthSchema = z.object({ state: z.enum(['ok', 'degraded']), detail: z.string() });

export const statusPageSchema = z.object({
  state: z.enum(['ok', 'degraded', 'down']),
  components: z.array(z.object({ name: z.string(), state: z.enum(['ok', 'degraded', 'down']) })),
  /** Open incidents and those of the last 7 days, newest first (incidents/, through the ops process). */
  incidents: z.array(z.object({ id: z.string(), title: z.string(), state: z.enum(['open', 'resolved']), startedAt: z.string(), endedAt: z.string().nullable() })),
});

/** Frames a client may send on /v1/stream. */
export const clientFrame = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('send'), conversationId: z.string().max(40), clientMessageId: z.uuid('clientMessageId must be a UUID'), body: text(1, messageBodyMax, 'body') }),
  z.strictObject({ type: z.literal('typing'), conversationId: z.string().max(40) }),
  z.strictObject({ type: z.literal('read'), conversationId: z.string().max(40), seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER) }),
]);

/** One line per zod problem, naming where: "body.username: …". */
export function describeProblems(error: z.ZodError, where: string): string {
  const lines = error.issues.slice(0, 5).map((issue) => {
    if (issue.code === 'unrecognized_keys') return `${[where, ...issue.path.map(String)].join('.')}: unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
    const path = [where, ...issue.path.map(String)].join('.');
    return `${path}: ${issue.message}`;
  });
  return lines.join('; ');
}
