// A deterministic simulator of a Parley cluster: N nodes, each an agent running `decide()` every
// loop interval against a simulated lease store (compare-and-set, TTL), a simulated PostgreSQL
// (WAL on timelines, streaming replication with lag, quorum-synchronous acknowledgements) and a
// seeded fault schedule. After every step it checks the invariants of DESIGN.md; a violation names
// the seed and the step, and `replay(seed)` runs the same schedule again with a trace.
//
// Everything random comes from one Prng seeded by the schedule's seed; nothing reads a clock.
import { confirmsPrimary, decide, desiredSynchronous, maintenanceActive, memberStateOf, nodeInMaintenance, settleSynchronous, termActive, type SynchronousSettling } from './decide.ts';
import { Prng } from './prng.ts';
import type {
  Action,
  DecideConfig,
  DecideFunction,
  Decision,
  LeaseRecord,
  MaintenanceRecord,
  MemberState,
  NodeObservation,
  Role,
  ManualFailoverRequest,
  SwitchoverRequest,
  SynchronousConfig,
  TimelineSwitch,
  View,
} from './types.ts';
import { commonPosition, formatLsn } from './wal.ts';

/** The invariants the simulator checks. */
export type InvariantName =
  /** Two nodes could acknowledge a write at the same instant. */
  | 'one-writer'
  /** A node that became (or acts as) primary lacks a write that was acknowledged. */
  | 'acknowledged-write-lost'
  /** A failover neither finished (primary with the lease) nor let go of the lease within its deadline. */
  | 'failover-deadline'
  /** A node other than the last holder took the lease while maintenance was on. */
  | 'failover-during-maintenance'
  /** After a quiet period with every fault healed, the cluster had no writable primary. */
  | 'no-primary-after-quiet-period'
  /** `decide()` asked for something impossible (start as primary from a standby's data, …). */
  | 'invalid-action';

/** The first invariant a run broke, where and when. */
export interface Violation {
  readonly seed: number;
  readonly step: number;
  readonly timeMs: number;
  readonly invariant: InvariantName;
  readonly message: string;
}

/** Kinds of fault a schedule injects; each `…` kind that starts something has a matching end. */
export type FaultKind =
  | 'kill' // kill -9 of the agent and its PostgreSQL
  | 'kill-postgres' // kill -9 of PostgreSQL alone; its agent starts it again
  | 'kill-agent' // kill -9 of the agent alone; PostgreSQL keeps running
  | 'break-postgres' // kill -9 of PostgreSQL, which then cannot start (a damaged data directory, a full disk)
  | 'repair' // every broken PostgreSQL can start again ("primary" would name another node by then)
  | 'restart' // the supervisor starts a dead agent again
  | 'freeze' // SIGSTOP of agent and PostgreSQL; a decision made just before may be carried out at thaw
  | 'thaw'
  | 'partition' // the node cannot reach the lease store
  | 'heal'
  | 'store-down' // nobody can reach the lease store
  | 'store-up'
  | 'lag' // the node's WAL receiver gets nothing
  | 'lag-end'
  | 'maintenance-on'
  | 'node-maintenance-on' // maintenance of `node` alone (not begun when it is the primary: the CLI refuses)
  | 'maintenance-off'
  | 'promote-fail' // promotions on the node fail at once
  | 'promote-hang' // promotions on the node take far longer than the deadline
  | 'promote-ok'
  | 'late-reads' // the node reads other members' states from the past
  | 'timely-reads'
  | 'lost-replies' // the node's lease writes take effect but half of the replies are lost
  | 'replies-ok'
  | 'switchover' // an operator asks the primary to hand over to `node` (durationMs: how long the request is valid)
  | 'manual-failover'; // an operator asks `node` to take over without --force (durationMs: how long the request is valid)

/** One fault at one time. `node` "primary" means whichever node is primary at that moment. */
export interface FaultEvent {
  readonly atMs: number;
  readonly kind: FaultKind;
  readonly node: string | null;
  /** Maintenance: how long the record lasts; late reads: how far in the past. */
  readonly durationMs: number;
}

/** Everything one seed determines before the run starts. */
export interface Schedule {
  readonly seed: number;
  readonly config: DecideConfig;
  readonly stepMs: number;
  /** Faults happen in [0, faultWindowMs); then everything heals and the cluster must settle. */
  readonly faultWindowMs: number;
  readonly endMs: number;
  readonly faults: readonly FaultEvent[];
}

/** Counts from one run. */
export interface SimulationStats {
  readonly steps: number;
  readonly decisions: number;
  readonly promotions: number;
  readonly rollbacks: number;
  readonly acknowledgedBytes: number;
  /** How often each action was carried out successfully, and each alert raised: what the run exercised. */
  readonly actions: Readonly<Record<string, number>>;
  readonly alerts: Readonly<Record<string, number>>;
}

/** The outcome of one seeded run. */
export interface SimulationResult {
  readonly seed: number;
  readonly schedule: Schedule;
  readonly violation: Violation | null;
  readonly stats: SimulationStats;
  /** Faults, decisions and their actions, one line each; empty unless asked for. */
  readonly trace: readonly string[];
}

/** Options of a run. */
export interface SimulationOptions {
  /** The decision function under test; `decide` by default. */
  readonly decide?: DecideFunction;
  /** Record a trace of faults, decisions and actions. */
  readonly trace?: boolean;
}

/** Totals over many seeds. */
export interface ManyResult {
  readonly schedules: number;
  readonly violations: readonly Violation[];
  readonly promotions: number;
  readonly rollbacks: number;
  readonly decisions: number;
}

const stepMs = 100;
const loopIntervalMs = 500;
const writeBytesMax = 48 * 1024;
const streamBytesMax = 160 * 1024;
const publishedHistoryMax = 8;
const violationsKeptMax = 20;

/** Builds the schedule of one seed: cluster shape, timings and faults. */
export function scheduleFor(seed: number): Schedule {
  const rng = new Prng(seed ^ 0x5eed_f00d);
  const nodeCount = rng.pick([1, 2, 3, 3, 3, 3, 3, 4, 4, 5, 5]);
  const members = Array.from({ length: nodeCount }, (_, i) => `node${i + 1}`);
  const standbys = nodeCount - 1;
  const synchronousQuorum = standbys <= 1 ? 1 : rng.chance(0.6) ? 1 : rng.int(1, standbys);
  const leaseTtlMs = rng.pick([1500, 2000, 3000, 5000]);
  const config: DecideConfig = {
    members,
    synchronousQuorum,
    leaseTtlMs,
    loopIntervalMs,
    failoverDeadlineMs: leaseTtlMs * rng.pick([2, 3, 4]),
    maximumLagOnFailoverBytes: rng.pick([0, 64 * 1024, 1024 * 1024, 16 * 1024 * 1024]),
    primaryStartTimeoutMs: leaseTtlMs * rng.pick([2, 3, 5]),
  };
  const faultWindowMs = rng.pick([10_000, 20_000, 30_000]);
  const faults: FaultEvent[] = [];
  const target = (): string => (rng.chance(0.5) ? 'primary' : rng.pick(members));
  const count = rng.int(1, 8);
  // At most one node broken for good, and no repair after it (a repair mends every node).
  let brokenForGood = false;
  for (let i = 0; i < count; i += 1) {
    const atMs = rng.int(5, faultWindowMs / stepMs - 1) * stepMs;
    const lengthMs = rng.int(1, 120) * stepMs;
    const endMs = Math.min(atMs + lengthMs, faultWindowMs);
    const node = target();
    const pair = (start: FaultKind, end: FaultKind, who: string | null, durationMs = 0): void => {
      faults.push({ atMs, kind: start, node: who, durationMs });
      if (rng.chance(0.85)) faults.push({ atMs: endMs, kind: end, node: who, durationMs: 0 });
    };
    switch (rng.int(0, 13)) {
      case 0:
      case 1:
        pair('kill', 'restart', node);
        break;
      case 2:
        faults.push({ atMs, kind: 'kill-postgres', node, durationMs: 0 });
        break;
      case 3:
        pair('kill-agent', 'restart', node);
        break;
      case 4:
        pair('freeze', 'thaw', node);
        break;
      case 5:
        pair('partition', 'heal', node);
        break;
      case 6:
        pair('store-down', 'store-up', null);
        break;
      case 7:
        pair('lag', 'lag-end', rng.pick(members));
        break;
      case 8:
        if (rng.chance(0.7)) pair('maintenance-on', 'maintenance-off', null, rng.int(1, 200) * stepMs);
        else pair('node-maintenance-on', 'maintenance-off', rng.pick(members), rng.int(1, 200) * stepMs);
        break;
      case 9:
        pair(rng.chance(0.5) ? 'promote-fail' : 'promote-hang', 'promote-ok', rng.pick(members));
        break;
      case 10:
        if (rng.chance(0.5)) pair('late-reads', 'timely-reads', rng.pick(members), rng.int(1, 30) * stepMs);
        else pair('lost-replies', 'replies-ok', node);
        break;
      case 11:
        // A node whose PostgreSQL cannot come back. Left broken for good only where the others can
        // still form a quorum and a standby may be promoted whatever WAL the broken node had beyond
        // the acknowledged (max lag 16 MiB, more than a schedule writes), so the quiet period can
        // demand a primary that acknowledges writes. Otherwise waiting is the right answer.
        faults.push({ atMs, kind: 'break-postgres', node, durationMs: 0 });
        const mayStayBroken = !brokenForGood && nodeCount - 2 >= synchronousQuorum && config.maximumLagOnFailoverBytes >= 16 * 1024 * 1024;
        if (!mayStayBroken || rng.chance(0.5)) faults.push({ atMs: endMs, kind: 'repair', node: null, durationMs: 0 });
        else brokenForGood = true;
        break;
      case 12:
        if (rng.chance(0.5)) faults.push({ atMs, kind: 'switchover', node: rng.pick(members), durationMs: rng.int(5, 100) * stepMs });
        else faults.push({ atMs, kind: 'manual-failover', node: rng.pick(members), durationMs: rng.int(5, 100) * stepMs });
        break;
      default:
        // Two faults at once on the primary: the classic double failure.
        faults.push({ atMs, kind: 'lag', node: rng.pick(members), durationMs: 0 });
        pair('kill', 'restart', 'primary');
        break;
    }
  }
  faults.sort((a, b) => a.atMs - b.atMs);
  const quietMs = config.failoverDeadlineMs + config.primaryStartTimeoutMs + 3 * leaseTtlMs + 20 * loopIntervalMs;
  return { seed, config, stepMs, faultWindowMs, endMs: faultWindowMs + quietMs, faults };
}

/** Runs the schedule of `seed` and checks every invariant at every step. */
export function simulate(seed: number, options: SimulationOptions = {}): SimulationResult {
  return simulateSchedule(scheduleFor(seed), options);
}

/**
 * Runs a given schedule: how a failing seed's schedule stays a regression test after the schedule
 * generator changes. What happens between faults still comes from `schedule.seed`.
 */
export function simulateSchedule(schedule: Schedule, options: SimulationOptions = {}): SimulationResult {
  return new Simulation(schedule, options).run();
}

/** Runs `seed` again exactly, with a trace of every fault, decision and action. */
export function replay(seed: number, options: SimulationOptions = {}): SimulationResult {
  return simulate(seed, { ...options, trace: true });
}

/** Runs `count` seeds from `firstSeed` and gathers their violations (the first few). */
export function simulateMany(firstSeed: number, count: number, options: SimulationOptions = {}): ManyResult {
  const violations: Violation[] = [];
  let promotions = 0;
  let rollbacks = 0;
  let decisions = 0;
  for (let i = 0; i < count; i += 1) {
    const result = simulate((firstSeed + i) >>> 0, options);
    promotions += result.stats.promotions;
    rollbacks += result.stats.rollbacks;
    decisions += result.stats.decisions;
    if (result.violation !== null && violations.length < violationsKeptMax) violations.push(result.violation);
  }
  return { schedules: count, violations, promotions, rollbacks, decisions };
}

/** One line naming a violation and the command that replays it. */
export function describeViolation(violation: Violation): string {
  return (
    `seed ${violation.seed} broke ${violation.invariant} at step ${violation.step} (t=${violation.timeMs} ms): ${violation.message}\n` +
    `  replay: node --import tsx src/failover/simulate-cli.ts --seed ${violation.seed} --trace`
  );
}

// ---------------------------------------------------------------------------------------------

interface SimNode {
  readonly name: string;
  // Processes.
  agentAlive: boolean;
  frozen: boolean;
  pgRunning: boolean;
  /** PostgreSQL cannot start (break-postgres until repair). */
  startBroken: boolean;
  /** The agent's memory of since when its PostgreSQL has been down (observe() keeps it). */
  downSinceMs: number | null;
  // PostgreSQL: its data directory and server.
  role: Role;
  timeline: number;
  history: readonly TimelineSwitch[];
  flushedLsn: number;
  upstream: string | null;
  streaming: boolean;
  synchronous: SynchronousConfig | null;
  promoteAtMs: number | null;
  // Faults on this node.
  promoteFault: 'none' | 'fail' | 'hang';
  partitioned: boolean;
  lagging: boolean;
  lateReadsMs: number;
  lostReplies: boolean;
  // The agent's memory, lost when it dies.
  nextTickAtMs: number;
  lastKnownLease: LeaseRecord | null;
  lastKnownMaintenance: MaintenanceRecord | null;
  lastKnownMembers: readonly MemberState[];
  pendingDecision: Decision | null;
  syncSettling: SynchronousSettling | null;
}

interface Attempt {
  readonly node: string;
  readonly startMs: number;
}

class SimulationStop extends Error {
  constructor(readonly violation: Violation) {
    super(violation.message);
  }
}

class Simulation {
  private readonly rng: Prng;
  private readonly config: DecideConfig;
  private readonly decideFn: DecideFunction;
  private readonly tracing: boolean;
  private readonly trace: string[] = [];
  private readonly nodes: SimNode[];
  private readonly byName = new Map<string, SimNode>();
  private lease: LeaseRecord | null;
  private maintenance: MaintenanceRecord | null = null;
  private switchover: SwitchoverRequest | null = null;
  private switchoverRevision = 0;
  private manualFailover: ManualFailoverRequest | null = null;
  private storeDown = false;
  private readonly published = new Map<string, MemberState[]>();
  /** The highest acknowledged position on each timeline. */
  private readonly acknowledged = new Map<number, number>();
  private attempts: Attempt[] = [];
  private readonly scratch: number[] = [];
  private lastTimeline = 1;
  private now = 0;
  private step = 0;
  private decisions = 0;
  private promotions = 0;
  private rollbacks = 0;
  private acknowledgedBytes = 0;
  private readonly actionCounts: Record<string, number> = {};
  private readonly alertCounts: Record<string, number> = {};

  constructor(private readonly schedule: Schedule, options: SimulationOptions) {
    this.rng = new Prng(schedule.seed);
    this.config = schedule.config;
    this.decideFn = options.decide ?? decide;
    this.tracing = options.trace === true;
    const primary = this.config.members[0]!;
    this.nodes = this.config.members.map((name) => ({
      name,
      agentAlive: true,
      frozen: false,
      pgRunning: true,
      startBroken: false,
      downSinceMs: null,
      role: name === primary ? 'primary' : 'standby',
      timeline: 1,
      history: [],
      flushedLsn: 0,
      upstream: name === primary ? null : primary,
      streaming: name !== primary,
      synchronous: desiredSynchronous(this.config, name),
      promoteAtMs: null,
      promoteFault: 'none',
      partitioned: false,
      lagging: false,
      lateReadsMs: 0,
      lostReplies: false,
      nextTickAtMs: this.rng.int(0, this.config.loopIntervalMs / stepMs - 1) * stepMs,
      lastKnownLease: null,
      lastKnownMaintenance: null,
      lastKnownMembers: [],
      pendingDecision: null,
      syncSettling: null,
    }));
    for (const node of this.nodes) this.byName.set(node.name, node);
    this.lease = { holder: primary, revision: '1', acquiredAtMs: 0, expiresAtMs: this.config.leaseTtlMs, released: false, rolledBack: false };
    for (const node of this.nodes) this.publish(node);
  }

  run(): SimulationResult {
    let violation: Violation | null = null;
    let faultIndex = 0;
    const faults = this.schedule.faults;
    this.log(`schedule ${describeSchedule(this.schedule)}`);
    try {
      for (this.now = 0; this.now <= this.schedule.endMs; this.now += stepMs, this.step += 1) {
        while (faultIndex < faults.length && faults[faultIndex]!.atMs <= this.now) {
          this.inject(faults[faultIndex]!);
          faultIndex += 1;
        }
        if (this.now === this.schedule.faultWindowMs) this.healAll();
        this.advancePostgres();
        this.checkWriters();
        this.runAgents();
        this.checkAttempts();
      }
      this.now -= stepMs;
      this.checkSettled();
    } catch (error) {
      if (!(error instanceof SimulationStop)) throw error;
      violation = error.violation;
      this.log(`VIOLATION ${violation.invariant}: ${violation.message}`);
    }
    return {
      seed: this.schedule.seed,
      schedule: this.schedule,
      violation,
      stats: {
        steps: this.step,
        decisions: this.decisions,
        promotions: this.promotions,
        rollbacks: this.rollbacks,
        acknowledgedBytes: this.acknowledgedBytes,
        actions: this.actionCounts,
        alerts: this.alertCounts,
      },
      trace: this.trace,
    };
  }

  // --- faults --------------------------------------------------------------------------------

  private inject(fault: FaultEvent): void {
    const node = this.faultTarget(fault.node);
    this.log(`fault ${fault.kind}${node === null ? '' : ` ${node.name}`}${fault.durationMs > 0 ? ` (${fault.durationMs} ms)` : ''}`);
    switch (fault.kind) {
      case 'kill':
        if (node === null) return;
        this.killAgent(node);
        this.killPostgres(node);
        node.frozen = false;
        // The supervisor saw agent and PostgreSQL exit together: a proven death may free the lease early.
        if (!this.storeDown && this.lease !== null && this.lease.holder === node.name && termActive(this.lease, this.now) && this.rng.chance(0.5)) {
          this.lease = { ...this.lease, revision: nextRevision(this.lease.revision), released: true, rolledBack: false, expiresAtMs: this.now };
          this.log(`supervisor released the lease of ${node.name} (proven dead)`);
        }
        return;
      case 'kill-postgres':
        if (node !== null) this.killPostgres(node);
        return;
      case 'break-postgres':
        if (node === null) return;
        this.killPostgres(node);
        node.startBroken = true;
        return;
      case 'repair':
        for (const broken of this.nodes) broken.startBroken = false;
        return;
      case 'kill-agent':
        if (node !== null) this.killAgent(node);
        return;
      case 'restart':
        if (node !== null && !node.agentAlive) {
          node.agentAlive = true;
          node.nextTickAtMs = this.now + this.rng.int(0, this.config.loopIntervalMs / stepMs - 1) * stepMs;
        }
        return;
      case 'freeze':
        if (node === null || node.frozen) return;
        if (node.agentAlive && this.rng.chance(0.5)) {
          // Paused between deciding and acting: the decision is carried out at thaw, late.
          node.pendingDecision = this.decideFor(node);
        }
        node.frozen = true;
        return;
      case 'thaw':
        if (node !== null) this.thaw(node);
        return;
      case 'partition':
        if (node !== null) node.partitioned = true;
        return;
      case 'heal':
        if (node !== null) node.partitioned = false;
        return;
      case 'store-down':
        this.storeDown = true;
        return;
      case 'store-up':
        this.storeDown = false;
        return;
      case 'lag':
        if (node !== null) node.lagging = true;
        return;
      case 'lag-end':
        if (node !== null) node.lagging = false;
        return;
      case 'maintenance-on':
        if (this.storeDown) return;
        this.maintenance = {
          revision: nextRevision(this.maintenance?.revision ?? null),
          active: true,
          expiresAtMs: this.now + fault.durationMs,
          reason: 'simulated maintenance',
          owner: 'simulator',
        };
        return;
      case 'node-maintenance-on':
        if (this.storeDown || node === null || (node.pgRunning && node.role === 'primary')) return;
        this.maintenance = {
          revision: nextRevision(this.maintenance?.revision ?? null),
          active: true,
          expiresAtMs: this.now + fault.durationMs,
          reason: 'simulated node maintenance',
          owner: 'simulator',
          node: node.name,
        };
        return;
      case 'maintenance-off':
        if (this.storeDown || this.maintenance === null) return;
        this.maintenance = { ...this.maintenance, revision: nextRevision(this.maintenance.revision), active: false };
        return;
      case 'promote-fail':
        if (node !== null) node.promoteFault = 'fail';
        return;
      case 'promote-hang':
        if (node !== null) node.promoteFault = 'hang';
        return;
      case 'promote-ok':
        if (node !== null) node.promoteFault = 'none';
        return;
      case 'late-reads':
        if (node !== null) node.lateReadsMs = fault.durationMs;
        return;
      case 'timely-reads':
        if (node !== null) node.lateReadsMs = 0;
        return;
      case 'lost-replies':
        if (node !== null) node.lostReplies = true;
        return;
      case 'switchover': {
        const primary = this.nodes.find((n) => n.pgRunning && n.role === 'primary' && this.lease?.holder === n.name);
        if (primary === undefined || node === null || this.storeDown) return;
        this.switchoverRevision += 1;
        this.switchover = { revision: String(this.switchoverRevision), from: primary.name, to: node.name, expiresAtMs: this.now + fault.durationMs };
        return;
      }
      case 'manual-failover':
        if (node === null || this.storeDown) return;
        this.switchoverRevision += 1;
        this.manualFailover = { revision: String(this.switchoverRevision), to: node.name, force: false, expiresAtMs: this.now + fault.durationMs };
        return;
      case 'replies-ok':
        if (node !== null) node.lostReplies = false;
        return;
    }
  }

  private faultTarget(name: string | null): SimNode | null {
    if (name === null) return null;
    if (name !== 'primary') return this.byName.get(name) ?? null;
    const holder = this.lease !== null && termActive(this.lease, this.now) ? this.byName.get(this.lease.holder) : undefined;
    if (holder !== undefined) return holder;
    return this.nodes.find((n) => n.pgRunning && n.role === 'primary') ?? this.nodes[0]!;
  }

  private healAll(): void {
    this.log('quiet period: every fault healed');
    this.storeDown = false;
    if (this.maintenance !== null && this.maintenance.active) {
      this.maintenance = { ...this.maintenance, revision: nextRevision(this.maintenance.revision), active: false };
    }
    for (const node of this.nodes) {
      node.partitioned = false;
      node.lagging = false;
      node.lateReadsMs = 0;
      node.lostReplies = false;
      node.promoteFault = 'none';
      if (node.frozen) this.thaw(node);
      if (!node.agentAlive) {
        node.agentAlive = true;
        node.nextTickAtMs = this.now;
      }
    }
  }

  private killAgent(node: SimNode): void {
    node.agentAlive = false;
    node.downSinceMs = null;
    node.pendingDecision = null;
    node.lastKnownLease = null;
    node.lastKnownMaintenance = null;
    node.lastKnownMembers = [];
    node.syncSettling = null;
  }

  private killPostgres(node: SimNode): void {
    node.pgRunning = false;
    node.streaming = false;
    node.promoteAtMs = null;
    this.dropFollowers(node);
  }

  private thaw(node: SimNode): void {
    if (!node.frozen) return;
    node.frozen = false;
    if (node.nextTickAtMs < this.now) node.nextTickAtMs = this.now;
    const late = node.pendingDecision;
    node.pendingDecision = null;
    if (late !== null && node.agentAlive) {
      this.log(`${node.name} carries out a decision made before it froze`);
      this.execute(node, late.actions, true);
      this.publish(node);
    }
  }

  // --- PostgreSQL ----------------------------------------------------------------------------

  private advancePostgres(): void {
    for (const node of this.nodes) {
      if (node.promoteAtMs !== null && node.promoteAtMs <= this.now && node.pgRunning && !node.frozen) this.completePromotion(node);
    }
    for (const node of this.nodes) {
      if (node.pgRunning && !node.frozen && node.role === 'primary' && this.rng.chance(0.8)) {
        node.flushedLsn += this.rng.int(1, writeBytesMax);
      }
    }
    for (const node of this.nodes) {
      if (!node.pgRunning || node.frozen || node.role !== 'standby' || node.upstream === null) continue;
      const source = this.byName.get(node.upstream);
      if (source === undefined) continue;
      if (!node.streaming) this.tryConnect(node, source);
      if (!node.streaming || node.lagging || source.frozen) continue;
      node.flushedLsn = Math.min(source.flushedLsn, node.flushedLsn + this.rng.int(0, streamBytesMax));
    }
    for (const node of this.nodes) this.acknowledge(node);
  }

  private tryConnect(node: SimNode, source: SimNode): void {
    if (!source.pgRunning || source.frozen || source.role !== 'primary') return;
    // The WAL receiver asks for the position after its own: the source must have it, on the same history.
    if (node.flushedLsn > source.flushedLsn) return;
    if (timelineOf(source, node.flushedLsn) !== timelineOf(node, node.flushedLsn)) return;
    node.streaming = true;
    node.timeline = source.timeline;
    node.history = source.history;
  }

  /** Records what the primary `node` can acknowledge now: WAL flushed on it and on k synchronous standbys. */
  private acknowledge(node: SimNode): void {
    if (!node.pgRunning || node.frozen || node.role !== 'primary') return;
    const quorumPosition = this.quorumPosition(node);
    if (quorumPosition === null) return;
    const start = node.history.length === 0 ? 0 : node.history[node.history.length - 1]!.endLsn;
    if (quorumPosition <= start) return;
    const before = this.acknowledged.get(node.timeline) ?? start;
    if (quorumPosition > before) {
      this.acknowledged.set(node.timeline, quorumPosition);
      this.acknowledgedBytes += quorumPosition - before;
    }
  }

  /** The position k synchronous standbys have flushed from `primary`, or null if fewer than k stream from it. */
  private quorumPosition(primary: SimNode): number | null {
    const sync = primary.synchronous;
    if (sync === null || sync.quorum === 0) return primary.flushedLsn;
    // The k-th highest position among the synchronous standbys streaming from it (N ≤ 9: a small insertion sort).
    const top = this.scratch;
    let count = 0;
    for (const standby of this.nodes) {
      if (standby.upstream !== primary.name || !standby.streaming || !standby.pgRunning || !sync.standbys.includes(standby.name)) continue;
      let position = Math.min(standby.flushedLsn, primary.flushedLsn);
      for (let i = 0; i < count; i += 1) {
        if (position > top[i]!) {
          const tmp = top[i]!;
          top[i] = position;
          position = tmp;
        }
      }
      top[count] = position;
      count += 1;
    }
    return count < sync.quorum ? null : top[sync.quorum - 1]!;
  }

  private completePromotion(node: SimNode): void {
    this.lastTimeline += 1;
    // The shell sets the configured quorum before promoting.
    node.synchronous = desiredSynchronous(this.config, node.name);
    node.history = [...node.history, { timeline: node.timeline, endLsn: node.flushedLsn }];
    node.timeline = this.lastTimeline;
    node.role = 'primary';
    node.upstream = null;
    node.streaming = false;
    node.promoteAtMs = null;
    this.promotions += 1;
    const lease = this.lease;
    if (lease !== null && lease.holder === node.name && termActive(lease, this.now)) {
      this.log(`${node.name} promoted: timeline ${node.timeline} from ${formatLsn(node.flushedLsn)}`);
      this.checkHoldsAcknowledged(node, 'promoted');
    } else {
      // A promotion that completes after its agent gave up on it (a hung `pg_ctl promote`) makes a
      // primary nobody follows; one-writer checks it can acknowledge nothing until it is demoted.
      this.log(`${node.name} promoted without the lease (a late promotion): timeline ${node.timeline}`);
    }
  }

  private dropFollowers(node: SimNode): void {
    for (const other of this.nodes) if (other.upstream === node.name) other.streaming = false;
  }

  // --- agents --------------------------------------------------------------------------------

  private runAgents(): void {
    const due: SimNode[] = [];
    for (const node of this.nodes) {
      if (node.agentAlive && !node.frozen && node.nextTickAtMs <= this.now) due.push(node);
    }
    if (due.length > 1) this.rng.shuffle(due);
    for (const node of due) {
      node.nextTickAtMs = this.now + this.config.loopIntervalMs;
      const made = this.decideFor(node);
      this.execute(node, made.actions, false);
      this.publish(node);
      this.checkWriters();
    }
  }

  private decideFor(node: SimNode): Decision {
    const view = this.viewOf(node, true);
    const made = this.decideFn(view, this.config, this.now);
    this.decisions += 1;
    if (this.tracing) {
      const actions = made.actions.filter((a) => a.type !== 'alert').map(describeAction);
      this.log(`${node.name}: ${made.reason}${actions.length > 0 ? ` → ${actions.join(', ')}` : ''}`);
    }
    return made;
  }

  private reachable(node: SimNode): boolean {
    return !this.storeDown && !node.partitioned;
  }

  private observe(node: SimNode): NodeObservation {
    if (node.pgRunning) node.downSinceMs = null;
    else node.downSinceMs ??= this.now;
    return {
      name: node.name,
      running: node.pgRunning,
      downSinceMs: node.downSinceMs,
      role: node.role,
      timeline: node.timeline,
      history: node.history,
      flushedLsn: node.flushedLsn,
      replayedLsn: node.flushedLsn,
      upstream: node.upstream,
      streaming: node.streaming,
      synchronous: node.synchronous,
    };
  }

  private viewOf(node: SimNode, full: boolean): View {
    const observation = this.observe(node);
    if (this.reachable(node)) {
      node.lastKnownLease = this.lease;
      node.lastKnownMaintenance = this.maintenance;
      const members = full ? this.readMembers(node) : [];
      if (full) node.lastKnownMembers = members;
      return { node: observation, lease: { known: true, record: this.lease }, maintenance: this.maintenance, members, failsafe: [], switchover: this.switchover, manualFailover: this.manualFailover };
    }
    const failsafe =
      full && node.pgRunning && node.role === 'primary'
        ? this.nodes.filter((peer) => peer !== node && peer.agentAlive && !peer.frozen).map((peer) => ({
            name: peer.name,
            confirms: confirmsPrimary(this.viewOf(peer, false), this.now, node.name),
          }))
        : [];
    return {
      node: observation,
      lease: { known: false, lastKnown: node.lastKnownLease },
      maintenance: node.lastKnownMaintenance,
      members: node.lastKnownMembers,
      switchover: null,
      manualFailover: null,
      failsafe,
    };
  }

  private readMembers(node: SimNode): MemberState[] {
    const members: MemberState[] = [];
    const before = this.now - node.lateReadsMs;
    for (const other of this.nodes) {
      if (other === node) continue;
      const states = this.published.get(other.name);
      if (states === undefined) continue;
      if (node.lateReadsMs === 0) {
        members.push(states[states.length - 1]!);
        continue;
      }
      for (let i = states.length - 1; i >= 0; i -= 1) {
        if (states[i]!.publishedAtMs <= before) {
          members.push(states[i]!);
          break;
        }
      }
    }
    return members;
  }

  // The node publishing now, and its standbys' flush positions as its pg_stat_replication shows
  // them (one function for the whole run: a closure per publish costs a tenth of the run time).
  private publishing: SimNode | null = null;
  private readonly flushedOfPublishing = (name: string): number | null => {
    const primary = this.publishing!;
    const standby = this.byName.get(name);
    return standby !== undefined && standby.pgRunning && standby.streaming && standby.upstream === primary.name ? Math.min(standby.flushedLsn, primary.flushedLsn) : null;
  };

  private publish(node: SimNode): void {
    if (!this.reachable(node)) return;
    const seen = this.lease !== null && termActive(this.lease, this.now) ? this.lease.holder : null;
    const observation = this.observe(node);
    this.publishing = node;
    const settled = settleSynchronous(node.syncSettling, observation, this.config, this.flushedOfPublishing);
    node.syncSettling = settled.settling;
    const state = memberStateOf(observation, seen, this.now, settled.published);
    let states = this.published.get(node.name);
    if (states === undefined) {
      states = [];
      this.published.set(node.name, states);
    }
    states.push(state);
    if (states.length > publishedHistoryMax) states.shift();
  }

  /** Carries out actions in order, stopping at the first that fails; alerts always go out. */
  private execute(node: SimNode, actions: readonly Action[], late: boolean): void {
    let failed = false;
    for (const action of actions) {
      if (action.type === 'alert') {
        this.alertCounts[action.code] = (this.alertCounts[action.code] ?? 0) + 1;
        continue;
      }
      if (failed) continue;
      let ok = this.apply(node, action, late);
      if (ok) this.actionCounts[action.type] = (this.actionCounts[action.type] ?? 0) + 1;
      // A lease write that took effect but whose reply was lost looks like a failure to the agent.
      if (ok && node.lostReplies && isLeaseWrite(action) && this.rng.chance(0.5)) {
        ok = false;
        this.log(`${node.name}: the reply to ${describeAction(action)} was lost`);
      }
      if (!ok) {
        failed = true;
        if (this.tracing) this.log(`${node.name}: ${describeAction(action)} failed; the rest is skipped`);
      }
    }
  }

  /** A decision asked for the impossible: a bug in `decide`, unless the decision was carried out late. */
  private invalid(node: SimNode, action: Action, late: boolean, why: string): boolean {
    if (!late) this.violate('invalid-action', `${node.name}: ${describeAction(action)}: ${why}`);
    return false;
  }

  private apply(node: SimNode, action: Exclude<Action, { type: 'alert' }>, late: boolean): boolean {
    switch (action.type) {
      case 'renewLease': {
        const lease = this.lease;
        if (!this.reachable(node) || lease === null || lease.revision !== action.revision) return false;
        if (lease.holder !== node.name || !termActive(lease, this.now)) return false;
        this.lease = { ...lease, revision: nextRevision(lease.revision), expiresAtMs: this.now + action.ttlMs };
        node.lastKnownLease = this.lease;
        return true;
      }
      case 'acquireLease': {
        const lease = this.lease;
        if (!this.reachable(node)) return false;
        if ((lease?.revision ?? null) !== action.revision || (this.maintenance?.revision ?? null) !== action.maintenanceRevision) return false;
        if (lease !== null && termActive(lease, this.now)) return false;
        const takeover = lease === null || lease.holder !== node.name;
        // An operator's manual failover may take over during maintenance: that is its point.
        const requested = this.manualFailover?.to === node.name && this.now < this.manualFailover.expiresAtMs;
        if (takeover && !requested && (maintenanceActive(this.maintenance, this.now) || nodeInMaintenance(this.maintenance, this.now) === node.name)) {
          this.violate('failover-during-maintenance', `${node.name} took the lease from ${lease?.holder ?? 'nobody'} while maintenance is on`);
        }
        this.lease = {
          holder: node.name,
          revision: nextRevision(lease?.revision ?? null),
          acquiredAtMs: this.now,
          expiresAtMs: this.now + action.ttlMs,
          released: false,
          rolledBack: false,
        };
        node.lastKnownLease = this.lease;
        if (node.role === 'standby') this.attempts.push({ node: node.name, startMs: this.now });
        this.log(`${node.name} took the lease (revision ${this.lease.revision})`);
        return true;
      }
      case 'releaseLease': {
        const lease = this.lease;
        if (!this.reachable(node) || lease === null || lease.revision !== action.revision || lease.holder !== node.name) return false;
        this.lease = {
          ...lease,
          revision: nextRevision(lease.revision),
          released: true,
          rolledBack: action.rollback,
          expiresAtMs: Math.min(lease.expiresAtMs, this.now),
        };
        node.lastKnownLease = this.lease;
        if (action.rollback) this.rollbacks += 1;
        this.log(`${node.name} released the lease${action.rollback ? ' (rollback)' : ''}`);
        return true;
      }
      case 'answerFailover':
        if (this.manualFailover?.revision === action.revision) this.manualFailover = null;
        return true;
      case 'handOver': {
        // The shell: a clean shutdown streams every byte to the standbys connected and able to
        // receive; the lease goes to the target only if it has all of it; else a restart as primary.
        if (this.switchover?.revision === action.switchoverRevision) this.switchover = null;
        if (!node.pgRunning || node.role !== 'primary') return late ? false : this.invalid(node, action, late, 'only a running primary hands over');
        const lease = this.lease;
        if (!this.reachable(node) || lease === null || lease.revision !== action.revision || lease.holder !== node.name || !termActive(lease, this.now)) return false;
        for (const other of this.nodes) {
          if (other.upstream === node.name && other.streaming && other.pgRunning && !other.frozen && !other.lagging) other.flushedLsn = Math.max(other.flushedLsn, node.flushedLsn);
        }
        const target = this.byName.get(action.to);
        const complete = target !== undefined && target.upstream === node.name && target.streaming && target.pgRunning && !target.frozen && target.flushedLsn >= node.flushedLsn;
        if (!complete) {
          this.log(`${node.name}: handover to ${action.to} rolled back (it did not confirm every byte)`);
          return false;
        }
        this.lease = { holder: target.name, revision: nextRevision(lease.revision), acquiredAtMs: this.now, expiresAtMs: this.now + this.config.leaseTtlMs, released: false, rolledBack: false };
        node.lastKnownLease = this.lease;
        this.attempts.push({ node: target.name, startMs: this.now });
        this.dropFollowers(node);
        node.role = 'standby';
        node.upstream = target.name;
        node.streaming = false;
        node.promoteAtMs = null;
        this.log(`${node.name} handed the lease to ${target.name} at ${formatLsn(node.flushedLsn)}`);
        return true;
      }
      case 'promote': {
        if (!node.pgRunning) return this.invalid(node, action, late, 'PostgreSQL is not running');
        if (node.role === 'primary') return true;
        if (node.promoteFault === 'fail') return false;
        if (node.promoteAtMs !== null) return true;
        const delayMs =
          node.promoteFault === 'hang'
            ? this.rng.int(this.config.failoverDeadlineMs / stepMs, (3 * this.config.failoverDeadlineMs) / stepMs) * stepMs
            : this.rng.pick([0, 0, stepMs, 2 * stepMs]);
        node.promoteAtMs = this.now + delayMs;
        if (delayMs === 0) this.completePromotion(node);
        return true;
      }
      case 'demote': {
        node.promoteAtMs = null;
        if (node.role === 'primary') this.dropFollowers(node);
        node.role = 'standby';
        node.upstream = null;
        node.streaming = false;
        return true;
      }
      case 'follow': {
        if (!node.pgRunning) return false;
        if (node.role !== 'standby') return this.invalid(node, action, late, 'a primary cannot follow');
        // Reconfiguring restarts the server, which drops a promotion still pending (promote.signal).
        node.promoteAtMs = null;
        node.upstream = action.node;
        node.streaming = false;
        const source = this.byName.get(action.node);
        if (source !== undefined && !node.frozen) this.tryConnect(node, source);
        return true;
      }
      case 'detach': {
        if (!node.pgRunning) return false;
        if (node.role !== 'standby') return this.invalid(node, action, late, 'a primary has nothing to detach from');
        node.promoteAtMs = null;
        node.upstream = null;
        node.streaming = false;
        return true;
      }
      case 'rewind': {
        if (node.role !== 'standby') return this.invalid(node, action, late, 'a primary must be demoted before a rewind');
        const source = this.byName.get(action.node);
        if (source === undefined || !source.pgRunning || source.frozen || node.startBroken) return false;
        node.flushedLsn = commonPosition(node, source);
        node.timeline = source.timeline;
        node.history = source.history;
        node.pgRunning = true;
        node.promoteAtMs = null;
        node.upstream = source.name;
        node.streaming = false;
        this.tryConnect(node, source);
        this.log(`${node.name} rewound from ${source.name} to ${formatLsn(node.flushedLsn)}`);
        return true;
      }
      case 'start': {
        if (node.pgRunning) return true;
        if (node.startBroken) return false;
        if (action.role === 'primary' && node.role !== 'primary') return this.invalid(node, action, late, "the data directory is a standby's");
        node.pgRunning = true;
        if (action.role === 'standby') {
          node.role = 'standby';
          node.upstream = null;
          node.streaming = false;
        }
        return true;
      }
      case 'setSynchronousStandbyNames': {
        if (!node.pgRunning) return false;
        node.synchronous = action.config;
        return true;
      }
    }
  }

  // --- invariants ----------------------------------------------------------------------------

  /** At most one node can acknowledge writes, and every node that can has every acknowledged write. */
  private checkWriters(): void {
    let writer: SimNode | null = null;
    for (const node of this.nodes) {
      if (!node.pgRunning || node.frozen || node.role !== 'primary' || this.quorumPosition(node) === null) continue;
      if (writer !== null) {
        this.violate('one-writer', `${writer.name} and ${node.name} can both acknowledge writes (lease: ${describeLease(this.lease, this.now)})`);
      }
      writer = node;
      this.checkHoldsAcknowledged(node, 'can acknowledge writes');
    }
  }

  private checkHoldsAcknowledged(node: SimNode, doing: string): void {
    for (const [timeline, position] of this.acknowledged) {
      if (position <= node.flushedLsn && timelineOf(node, position) === timeline) continue;
      this.violate(
        'acknowledged-write-lost',
        `${node.name} ${doing} but lacks the write acknowledged at ${formatLsn(position)} on timeline ${timeline} (it has ${formatLsn(node.flushedLsn)} on timeline ${node.timeline})`,
      );
    }
  }

  /** Every failover ends within its deadline: the candidate is primary with the lease, or has let the lease go. */
  private checkAttempts(): void {
    if (this.attempts.length === 0) return;
    const open: Attempt[] = [];
    for (const attempt of this.attempts) {
      const lease = this.lease;
      const node = this.byName.get(attempt.node)!;
      // The same term: a new acquisition by the same node is a new attempt with its own deadline.
      const holds = lease !== null && lease.holder === attempt.node && lease.acquiredAtMs === attempt.startMs && termActive(lease, this.now);
      if (!holds) continue;
      if (node.pgRunning && node.role === 'primary') continue;
      if (this.now > attempt.startMs + this.config.failoverDeadlineMs) {
        this.violate('failover-deadline', `${attempt.node} took the lease at ${attempt.startMs} and neither promoted nor let go by ${this.now}`);
      }
      open.push(attempt);
    }
    this.attempts = open;
  }

  /** After the quiet period: exactly one writable primary, holding the lease, able to acknowledge. */
  private checkSettled(): void {
    const primaries = this.nodes.filter((n) => n.pgRunning && n.role === 'primary');
    const lease = this.lease;
    const states = this.nodes.map((n) => `${n.name}:${n.pgRunning ? n.role : 'down'}${n.upstream === null ? '' : `←${n.upstream}${n.streaming ? '' : '?'}`}`).join(' ');
    if (primaries.length !== 1) {
      this.violate('no-primary-after-quiet-period', `${primaries.length} primaries after the quiet period (${states}; lease: ${describeLease(lease, this.now)})`);
    }
    const primary = primaries[0]!;
    if (lease === null || lease.holder !== primary.name || !termActive(lease, this.now)) {
      this.violate('no-primary-after-quiet-period', `primary ${primary.name} does not hold the lease (${states}; lease: ${describeLease(lease, this.now)})`);
    }
    if (this.quorumPosition(primary) === null) {
      this.violate('no-primary-after-quiet-period', `primary ${primary.name} has too few synchronous standbys to acknowledge (${states})`);
    }
  }

  private violate(invariant: InvariantName, message: string): never {
    throw new SimulationStop({ seed: this.schedule.seed, step: this.step, timeMs: this.now, invariant, message });
  }

  private log(line: string): void {
    if (this.tracing) this.trace.push(`t=${this.now} ${line}`);
  }
}

function timelineOf(node: { readonly timeline: number; readonly history: readonly TimelineSwitch[] }, position: number): number {
  // Kept apart from wal.ts's timelineAt on purpose: the checker should not share code with what it
  // checks. A switch point ends every earlier timeline that would reach past it.
  const ends = node.history.map((entry) => entry.endLsn);
  for (let i = ends.length - 2; i >= 0; i -= 1) ends[i] = Math.min(ends[i]!, ends[i + 1]!);
  for (let i = 0; i < ends.length; i += 1) if (position <= ends[i]!) return node.history[i]!.timeline;
  return node.timeline;
}

/** The store's next revision token after `revision` (decimal integers, as lease-store.ts promises). */
function nextRevision(revision: string | null): string {
  return String(Number(revision ?? '0') + 1);
}

function isLeaseWrite(action: Action): boolean {
  return action.type === 'renewLease' || action.type === 'acquireLease' || action.type === 'releaseLease';
}

function describeAction(action: Action): string {
  switch (action.type) {
    case 'renewLease':
      return `renew(r${action.revision}, ${action.ttlMs} ms)`;
    case 'acquireLease':
      return `acquire(r${action.revision ?? '-'}, m${action.maintenanceRevision ?? '-'})`;
    case 'releaseLease':
      return `release(r${action.revision}${action.rollback ? ', rollback' : ''})`;
    case 'follow':
      return `follow(${action.node})`;
    case 'detach':
      return `detach(${action.from})`;
    case 'rewind':
      return `rewind(${action.node})`;
    case 'start':
      return `start(${action.role})`;
    case 'setSynchronousStandbyNames':
      return `setSynchronous(${action.config === null ? 'none' : `ANY ${action.config.quorum} (${action.config.standbys.join(', ')})`})`;
    case 'alert':
      return `alert(${action.code})`;
    default:
      return action.type;
  }
}

function describeLease(lease: LeaseRecord | null, now: number): string {
  if (lease === null) return 'none';
  const state = lease.released ? 'released' : lease.expiresAtMs > now ? `until ${lease.expiresAtMs}` : `expired at ${lease.expiresAtMs}`;
  return `${lease.holder} r${lease.revision} ${state}`;
}

/**
 * Reads back a line written by `describeSchedule`, so a failing schedule can be kept verbatim as a
 * regression test even after the generator behind `scheduleFor` changes.
 */
export function parseSchedule(line: string): Schedule {
  const match =
    /seed (\d+): (\d+) nodes, ANY (\d+), ttl (\d+) ms, loop (\d+) ms, deadline (\d+) ms, max lag (\d+) B, faults until (\d+) ms, end (\d+) ms;(.*?)(?:; start timeout (\d+) ms)?$/.exec(line);
  if (match === null) throw new Error(`parseSchedule: not a schedule line: "${line}"`);
  const number = (i: number): number => Number(match[i]);
  const members = Array.from({ length: number(2) }, (_, i) => `node${i + 1}`);
  const faults = match[10]!
    .trim()
    .split(/\s+/)
    .filter((word) => word.length > 0)
    .map((word): FaultEvent => {
      const fault = /^(\d+):([a-z-]+)(?:\(([^)]+)\))?(?:\[(\d+)\])?$/.exec(word);
      if (fault === null) throw new Error(`parseSchedule: not a fault: "${word}"`);
      return { atMs: Number(fault[1]), kind: fault[2] as FaultKind, node: fault[3] ?? null, durationMs: Number(fault[4] ?? 0) };
    });
  return {
    seed: number(1),
    config: {
      members,
      synchronousQuorum: number(3),
      leaseTtlMs: number(4),
      loopIntervalMs: number(5),
      failoverDeadlineMs: number(6),
      maximumLagOnFailoverBytes: number(7),
      // Lines written before the setting existed ran with it equal to the deadline.
      primaryStartTimeoutMs: match[11] === undefined ? number(6) : Number(match[11]),
    },
    stepMs,
    faultWindowMs: number(8),
    endMs: number(9),
    faults,
  };
}

/** One line describing a schedule: cluster shape, timings and faults. */
export function describeSchedule(schedule: Schedule): string {
  const c = schedule.config;
  const faults = schedule.faults
    .map((f) => `${f.atMs}:${f.kind}${f.node === null ? '' : `(${f.node})`}${f.durationMs > 0 ? `[${f.durationMs}]` : ''}`)
    .join(' ');
  return (
    `seed ${schedule.seed}: ${c.members.length} nodes, ANY ${c.synchronousQuorum}, ttl ${c.leaseTtlMs} ms, ` +
    `loop ${c.loopIntervalMs} ms, deadline ${c.failoverDeadlineMs} ms, max lag ${c.maximumLagOnFailoverBytes} B, ` +
    `faults until ${schedule.faultWindowMs} ms, end ${schedule.endMs} ms; ${faults}; start timeout ${c.primaryStartTimeoutMs} ms`
  );
}
