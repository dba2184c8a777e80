// monitor/: samples of the cluster (the sampler), the last hour of them, their /metrics, the
// declarative alert rules and their pure evaluator. The ops process (src/ops/) runs them once a
// second; other folders import this file only.
export { alertId, emptyAlertState, evaluate, type Alert, type AlertState, type Transition } from './evaluate.ts';
export { createOpsMetrics, type OpsMetrics } from './exposition.ts';
export { createHistory, type History } from './history.ts';
export { parsePrometheusText, type PromSeries } from './promtext.ts';
export { defaultRulesPath, loadRules, parseRules, parseRulesText, type Rule } from './rules.ts';
export { createSampler, lsnBytes, type SampledAppServer, type SampledNode, type Sampler, type SampleTotals } from './sampler.ts';
export type * from './samples.ts';
