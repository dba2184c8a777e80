// monitor/: samples of the cluster, the declarative alert rules and their pure evaluator. The ops
// process that takes a sample every second and exports /metrics is the next step (issue 7);
// other folders import this file only.
export { emptyAlertState, evaluate, type Alert, type AlertState, type Transition } from './evaluate.ts';
export { defaultRulesPath, loadRules, parseRules, parseRulesText, type Rule } from './rules.ts';
export type * from './samples.ts';
