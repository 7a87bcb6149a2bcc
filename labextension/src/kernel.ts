/**
 * The sidebar's side of the kernel protocol (PROTOCOL.md): it asks nbdeploy.faces in the notebook's kernel
 * which models and data it holds, runs a deploy there and reads the events it prints, and fetches a readiness
 * report. The result marker comes from the kernel (`kernel_models()`'s `protocol.mark`): faces.RESULT_MARK is
 * its one definition.
 */
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { JSONObject } from '@lumino/coreutils';

/** The kernel-side module every call goes through. */
const FACES = "__import__('nbdeploy.faces', fromlist=['faces'])";

/** A deployable model in the kernel. */
export interface IModelInfo {
  name: string;
  type: string;
  fitted: boolean;
}

/** A table or vector in the kernel that can be test data. */
export interface IDataInfo {
  name: string;
  type: string;
  shape: number[];
  ndim: number;
  columns: string[];
}

/** What the kernel's nbdeploy says about the protocol it speaks. */
export interface IProtocol {
  mark: string;
  version: number;
}

/** What `kernel_models()` answers. */
export interface IInventory {
  models: IModelInfo[];
  data: IDataInfo[];
  targets: string[];
  /** How a deploy may go in beside the version in service (blue-green first); absent from older kernels. */
  strategies?: string[];
  nbdeploy?: string;
  protocol?: IProtocol;
}

/** What `panel_deploy` is asked to do. */
export interface IDeploySpec {
  model: string;
  name: string;
  target: string;
  X_test: string | null;
  y_test: string | null;
  sensitive: string | null;
  force: boolean;
  /** blue-green (the default), shadow, canary or ab. */
  strategy?: string | null;
  /** The candidate's share as typed: 0.1, 10%, or v1=0.5,new=0.5 for an A/B test. */
  traffic?: string | null;
}

/** A step of the deploy has started (i is 0-based; n may grow). */
export interface IStepEvent {
  event: 'step';
  i: number;
  n: number;
  label: string;
  desc: string;
}

/** The deploy succeeded. */
export interface IDeployed {
  event?: 'result';
  ok: true;
  name: string;
  version: number;
  url: string | null;
  target?: string;
  verdict: string | null;
  reasons: string[];
  report?: boolean;
}

/** The deploy failed. */
export interface IFailed {
  event?: 'result';
  ok: false;
  error: string;
  kind?: string;
  trace?: string;
}

/** The one result event, last. */
export type DeployResult = IDeployed | IFailed;

/** Any event a marked line carries. */
export type DeployEvent = IStepEvent | DeployResult;

/** What `panel_report` answers. */
export type ReportAnswer =
  { ok: true; html: string; title: string } | { ok: false; error: string };

/** Called as a deploy runs. */
export interface IDeployHandlers {
  step(event: IStepEvent): void;
  log(line: string): void;
}

/** The kernel could not answer, or answered something else than nbdeploy's JSON. */
export class KernelError extends Error {}

/** One answer of `user_expressions`, as the kernel sends it. */
interface IExpressionAnswer {
  status: string;
  data?: JSONObject;
  ename?: string;
  evalue?: string;
}

/** The JSON value of a `user_expressions` answer (application/json, or JSON text). */
function expressionValue(answer: IExpressionAnswer | undefined): unknown {
  if (!answer || answer.status !== 'ok' || !answer.data) {
    throw new KernelError(
      `${answer?.ename ?? 'error'}: ${answer?.evalue ?? 'no answer'} (is nbdeploy installed in this kernel?)`
    );
  }
  if (answer.data['application/json'] !== undefined) {
    return answer.data['application/json'];
  }
  return JSON.parse(String(answer.data['text/plain']));
}

/** Evaluate one Python expression in the kernel without touching its history; its JSON value. */
export async function evaluate<T>(
  kernel: Kernel.IKernelConnection,
  expression: string
): Promise<T> {
  const future = kernel.requestExecute({
    code: '',
    silent: true,
    store_history: false,
    user_expressions: { value: expression }
  });
  const reply = (await future.done) as KernelMessage.IExecuteReplyMsg;
  if (reply.content.status !== 'ok') {
    throw new KernelError(`the kernel refused: ${reply.content.status}`);
  }
  const answers = reply.content.user_expressions as unknown as Record<
    string,
    IExpressionAnswer | undefined
  >;
  return expressionValue(answers['value']) as T;
}

/** The models, data and targets the kernel holds. */
export function kernelModels(
  kernel: Kernel.IKernelConnection
): Promise<IInventory> {
  return evaluate<IInventory>(kernel, `${FACES}.kernel_models()`);
}

/**
 * The result marker of the kernel's nbdeploy: `protocol.mark` from `kernel_models()`. An nbdeploy from before
 * the protocol field is asked for `faces.RESULT_MARK` itself; null when neither answers.
 */
export async function resultMark(
  kernel: Kernel.IKernelConnection,
  inventory: IInventory
): Promise<string | null> {
  if (inventory.protocol?.mark) {
    return inventory.protocol.mark;
  }
  try {
    const old = await evaluate<{ mark: string }>(
      kernel,
      `${FACES}.JSONResult({'mark': ${FACES}.RESULT_MARK})`
    );
    return old.mark || null;
  } catch {
    return null;
  }
}

/** A progress line of nbdeploy's text form ("deploy churn [2/4] package"), for kernels without step events. */
const TEXT_STEP = /^(.*) \[(\d+)\/(\d+)\] (.+)$/;

/**
 * Read one printed line: an event after the marker, or plain log text. With `textSteps` (a kernel whose
 * nbdeploy prints no step events) a line of the text form is read as a step.
 */
export function parseLine(
  line: string,
  mark: string,
  textSteps = false
): DeployEvent | string {
  if (line.startsWith(mark)) {
    return JSON.parse(line.slice(mark.length)) as DeployEvent;
  }
  const m = textSteps ? TEXT_STEP.exec(line) : null;
  if (m) {
    const [, desc, i, n, label] = m;
    return { event: 'step', i: Number(i) - 1, n: Number(n), label, desc };
  }
  return line;
}

/** Run `panel_deploy(spec)` in the kernel, reporting steps and log lines as they come; its result. */
export async function deploy(
  kernel: Kernel.IKernelConnection,
  spec: IDeploySpec,
  mark: string,
  on: IDeployHandlers,
  textSteps = false
): Promise<DeployResult> {
  const code = `${FACES}.panel_deploy(${JSON.stringify(JSON.stringify(spec))});`;
  const future = kernel.requestExecute({
    code,
    silent: false,
    store_history: false
  });
  let result: DeployResult | null = null;
  let partial = '';
  const take = (line: string) => {
    if (!line) {
      return;
    }
    const e = parseLine(line, mark, textSteps);
    if (typeof e === 'string') {
      on.log(e);
    } else if (e.event === 'step') {
      on.step(e);
      on.log(line.startsWith(mark) ? `${e.desc}: ${e.label}` : line);
    } else {
      result = e;
    }
  };
  future.onIOPub = msg => {
    if (KernelMessage.isStreamMsg(msg)) {
      const lines = (partial + msg.content.text).split('\n');
      partial = lines.pop() ?? '';
      lines.forEach(take);
    } else if (KernelMessage.isErrorMsg(msg)) {
      const c = msg.content;
      result = { ok: false, error: `${c.ename}: ${c.evalue}`, kind: c.ename };
    }
  };
  try {
    await future.done;
  } catch (e) {
    result = result ?? { ok: false, error: String(e) };
  }
  take(partial);
  return (
    result ?? {
      ok: false,
      error: 'the kernel gave no result (was it interrupted?)'
    }
  );
}

/** The readiness report of deployment `name` v`version`, as HTML. */
export function panelReport(
  kernel: Kernel.IKernelConnection,
  name: string,
  version: number
): Promise<ReportAnswer> {
  return evaluate<ReportAnswer>(
    kernel,
    `${FACES}.panel_report(${JSON.stringify(name)}, ${Math.trunc(version)})`
  );
}

/** Did this kernel message come from the user running code (not from the sidebar's own calls)? */
export function isUserCode(msg: KernelMessage.IMessage): boolean {
  if (!KernelMessage.isExecuteInputMsg(msg)) {
    return false;
  }
  const code = msg.content.code;
  return code !== '' && !code.includes('nbdeploy.faces');
}

/** Is this kernel message the kernel going idle? */
export function isIdle(msg: KernelMessage.IMessage): boolean {
  return (
    KernelMessage.isStatusMsg(msg) && msg.content.execution_state === 'idle'
  );
}
