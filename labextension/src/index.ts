/**
 * nbdeploy's JupyterLab sidebar: deploy a model that lives in the active notebook's kernel, and list, stop and
 * roll back deployments. It holds no deploy logic: it runs nbdeploy's public API in the kernel
 * (nbdeploy.faces.kernel_models / panel_deploy) and calls the server extension (/nbdeploy/deployments).
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { KernelMessage, ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

const PLUGIN_ID = 'nbdeploy-labextension:plugin';
const COMMAND = 'nbdeploy:open';
const RESULT_MARK = 'NBDEPLOY-RESULT ';
const FACES = "__import__('nbdeploy.faces', fromlist=['faces'])";

const rocketIcon = new LabIcon({
  name: 'nbdeploy:rocket',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16"><path class="jp-icon3" fill="#616161" ' +
    'd="M12 2c3 2 5 6 5 10l2 3v3l-3-1-1 2H9l-1-2-3 1v-3l2-3c0-4 2-8 5-10zm0 6a2 2 0 100 4 2 2 0 000-4z"/></svg>'
});

/** What the kernel reports it holds (nbdeploy.faces.kernel_models). */
interface IInventory {
  models: { name: string; type: string; fitted: boolean }[];
  data: { name: string; type: string; shape: number[]; ndim: number; columns: string[] }[];
  targets: string[];
}

/** One ledger row from the server extension. */
interface IDeploymentRow {
  name: string;
  version: number;
  target: string;
  status: string;
  url: string | null;
  verdict: string | null;
  detail: string | null;
}

/** The outcome line panel_deploy prints. */
interface IOutcome {
  ok: boolean;
  name?: string;
  version?: number;
  url?: string;
  verdict?: string | null;
  reasons?: string[];
  error?: string;
  trace?: string;
}

interface IDefaults {
  target: string;
  name: string;
  refreshSeconds: number;
}

/** Call the server extension; JSON back, or an Error carrying the server's message. */
async function requestAPI<T>(path: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'nbdeploy', path);
  const response = await ServerConnection.makeRequest(url, init, settings);
  const text = await response.text();
  const body = text ? JSON.parse(text) : {};
  if (!response.ok) {
    throw new Error(body.error || body.message || `${response.status} ${response.statusText}`);
  }
  return body as T;
}

/** A DOM element with attributes and children. */
function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

/** Replace a select's options, keeping the chosen value when it is still offered. */
function fillSelect(select: HTMLSelectElement, options: [string, string][], keep = true): void {
  const old = select.value;
  select.replaceChildren(...options.map(([value, label]) => el('option', { value }, label)));
  if (keep && options.some(([v]) => v === old)) {
    select.value = old;
  }
}

/** The sidebar panel. */
class DeployPanel extends Widget {
  constructor(private tracker: INotebookTracker, public defaults: IDefaults) {
    super();
    this.id = 'nbdeploy-sidebar';
    this.title.icon = rocketIcon;
    this.title.caption = 'nbdeploy: deploy a model';
    this.addClass('nbdeploy-panel');
    this.build();
    tracker.currentChanged.connect(() => this.watchKernel());
    this.watchKernel();
  }

  readonly notebookLabel = el('div', { class: 'nbdeploy-muted', id: 'nbdeploy-notebook' }, 'no notebook open');
  readonly model = el('select', { id: 'nbdeploy-model' });
  readonly xTest = el('select', { id: 'nbdeploy-xtest' });
  readonly yTest = el('select', { id: 'nbdeploy-ytest' });
  readonly sensitive = el('select', { id: 'nbdeploy-sensitive' });
  readonly name = el('input', { id: 'nbdeploy-name', type: 'text', placeholder: 'deployment name' });
  readonly target = el('select', { id: 'nbdeploy-target' });
  readonly force = el('input', { id: 'nbdeploy-force', type: 'checkbox' });
  readonly deployButton = el('button', { id: 'nbdeploy-deploy', class: 'jp-mod-styled jp-mod-accept' }, 'Deploy');
  readonly log = el('pre', { id: 'nbdeploy-log', class: 'nbdeploy-log' });
  readonly result = el('div', { id: 'nbdeploy-result' });
  readonly table = el('table', { id: 'nbdeploy-deployments', class: 'nbdeploy-table' });
  readonly listStatus = el('div', { id: 'nbdeploy-list-status', class: 'nbdeploy-muted' });
  readonly actionStatus = el('div', { id: 'nbdeploy-action' });
  private inventory: IInventory = { models: [], data: [], targets: [] };
  private timer = 0;
  private userRan = false;
  private watched: any = null;

  private build(): void {
    const refresh = el('button', { id: 'nbdeploy-refresh-models', class: 'jp-mod-styled' }, 'Refresh');
    refresh.onclick = () => void this.refreshModels();
    const refreshList = el('button', { id: 'nbdeploy-refresh-list', class: 'jp-mod-styled' }, 'Refresh');
    refreshList.onclick = () => void this.refreshDeployments();
    this.deployButton.onclick = () => void this.deploy();
    this.xTest.onchange = () => this.fillSensitive();
    this.model.onchange = () => this.proposeName();
    const field = (text: string, input: HTMLElement) => el('label', {}, text, input);
    this.node.append(
      el('h2', {}, 'nbdeploy'),
      this.notebookLabel,
      el('h3', {}, 'Deploy a model from this kernel'),
      field('Model', this.model),
      field('Test data X', this.xTest),
      field('Test target y', this.yTest),
      field('Sensitive column', this.sensitive),
      field('Name', this.name),
      field('Target', this.target),
      el('label', {}, this.force, ' deploy even if the readiness check fails'),
      el('div', {}, this.deployButton, refresh),
      this.log,
      this.result,
      el('h3', {}, 'Deployments'),
      el('div', {}, refreshList),
      this.actionStatus,
      this.listStatus,
      this.table
    );
  }

  /** The kernel of the notebook the user is working in. */
  private get kernel() {
    return this.tracker.currentWidget?.sessionContext.session?.kernel ?? null;
  }

  /** Follow the current notebook: refresh the models when it changes and after the user runs a cell. */
  private watchKernel(): void {
    const ctx = this.tracker.currentWidget?.sessionContext ?? null;
    if (this.watched) {
      this.watched.iopubMessage.disconnect(this.onIOPub, this);
    }
    this.watched = ctx;
    if (ctx) {
      ctx.iopubMessage.connect(this.onIOPub, this);
      void ctx.ready.then(() => this.refreshModels());
    }
    this.notebookLabel.textContent = this.tracker.currentWidget
      ? `Notebook: ${this.tracker.currentWidget.context.path}`
      : 'no notebook open';
  }

  private onIOPub(_: unknown, msg: KernelMessage.IMessage): void {
    if (msg.header.msg_type === 'execute_input') {
      const code = (msg.content as any).code as string;
      this.userRan = this.userRan || (code !== '' && !code.includes('nbdeploy.faces'));
    } else if (msg.header.msg_type === 'status' && (msg.content as any).execution_state === 'idle' && this.userRan) {
      this.userRan = false;
      if (this.isVisible) {
        void this.refreshModels();
      }
    }
  }

  /** Ask the kernel which models and data it holds. */
  async refreshModels(): Promise<void> {
    const kernel = this.kernel;
    if (!kernel) {
      this.setInventory({ models: [], data: [], targets: [] });
      return;
    }
    const future = kernel.requestExecute({
      code: '',
      silent: true,
      store_history: false,
      user_expressions: { inv: `${FACES}.kernel_models()` }
    });
    const reply = (await future.done) as KernelMessage.IExecuteReplyMsg;
    const inv = (reply.content as any).user_expressions?.inv;
    if (!inv || inv.status !== 'ok') {
      this.showError(`could not list the kernel's models: ${inv?.ename ?? ''} ${inv?.evalue ?? ''} (is nbdeploy installed in this kernel?)`);
      return;
    }
    this.setInventory(inv.data['application/json'] as IInventory);
  }

  private setInventory(inv: IInventory): void {
    this.inventory = inv;
    const none: [string, string] = ['', '(none)'];
    const models = inv.models.map(m => [m.name, `${m.name} (${m.type}${m.fitted ? '' : ', not fitted'})`] as [string, string]);
    fillSelect(this.model, models.length ? models : [['', '(no model with predict in this kernel)']]);
    const describe = (d: IInventory['data'][0]) => [d.name, `${d.name} (${d.type} ${d.shape.join('x')})`] as [string, string];
    fillSelect(this.xTest, [none, ...inv.data.filter(d => d.ndim === 2).map(describe)]);
    fillSelect(this.yTest, [none, ...inv.data.filter(d => d.ndim === 1).map(describe)]);
    const targets = inv.targets.length ? inv.targets : [this.defaults.target];
    fillSelect(this.target, targets.map(t => [t, t] as [string, string]));
    if (!this.target.dataset.touched && targets.includes(this.defaults.target)) {
      this.target.value = this.defaults.target;
    }
    this.fillSensitive();
    this.proposeName();
  }

  private fillSensitive(): void {
    const x = this.inventory.data.find(d => d.name === this.xTest.value);
    fillSelect(this.sensitive, [['', '(none)'], ...(x?.columns ?? []).map(c => [c, c] as [string, string])]);
  }

  private proposeName(): void {
    if (!this.name.dataset.touched) {
      this.name.value = this.defaults.name || this.model.value.replace(/_/g, '-');
    }
  }

  /** Run nd.check + nd.deploy in the kernel, streaming its lines into the log. */
  async deploy(): Promise<void> {
    const kernel = this.kernel;
    if (!kernel || !this.model.value) {
      this.showError('open a notebook whose kernel holds a fitted model, then pick it');
      return;
    }
    const spec = {
      model: this.model.value,
      name: this.name.value || this.model.value,
      target: this.target.value || this.defaults.target,
      X_test: this.xTest.value || null,
      y_test: this.yTest.value || null,
      sensitive: this.sensitive.value || null,
      force: this.force.checked
    };
    this.deployButton.disabled = true;
    this.log.textContent = '';
    this.result.replaceChildren(el('span', { class: 'nbdeploy-muted' }, `deploying ${spec.model} as ${spec.name}...`));
    const future = kernel.requestExecute({
      code: `${FACES}.panel_deploy(${JSON.stringify(JSON.stringify(spec))});`,
      silent: false,
      store_history: false
    });
    let outcome: IOutcome | null = null;
    future.onIOPub = msg => {
      if (msg.header.msg_type === 'stream') {
        for (const line of ((msg.content as any).text as string).split('\n')) {
          if (line.startsWith(RESULT_MARK)) {
            outcome = JSON.parse(line.slice(RESULT_MARK.length));
          } else if (line) {
            this.log.textContent += line + '\n';
            this.log.scrollTop = this.log.scrollHeight;
          }
        }
      } else if (msg.header.msg_type === 'error') {
        const c = msg.content as any;
        outcome = { ok: false, error: `${c.ename}: ${c.evalue}` };
      }
    };
    try {
      await future.done;
    } catch (e) {
      outcome = outcome ?? { ok: false, error: String(e) };
    } finally {
      this.deployButton.disabled = false;
    }
    this.showOutcome(outcome ?? { ok: false, error: 'the kernel gave no result (was it interrupted?)' });
    void this.refreshDeployments();
  }

  private showOutcome(o: IOutcome): void {
    if (!o.ok) {
      this.showError(o.error + (o.trace ? `\n${o.trace}` : ''));
      return;
    }
    const v = o.verdict ?? 'none';
    const badge = el('span', { class: `nbdeploy-verdict nbdeploy-verdict-${v}`, id: 'nbdeploy-verdict' }, v.toUpperCase());
    const reasons = el('ul', { class: 'nbdeploy-reasons' }, ...(o.reasons ?? []).map(r => el('li', {}, r)));
    const link = el('a', { href: o.url ?? '', target: '_blank', id: 'nbdeploy-url', class: 'nbdeploy-url' }, o.url ?? '');
    this.result.replaceChildren(
      el('div', {}, 'Readiness: ', badge),
      reasons,
      el('div', {}, `${o.name} v${o.version} serving at `, link)
    );
  }

  private showError(message: string): void {
    this.result.replaceChildren(el('div', { class: 'nbdeploy-error', id: 'nbdeploy-error' }, message));
  }

  /** Reload the ledger from the server extension. */
  async refreshDeployments(): Promise<void> {
    try {
      const { deployments } = await requestAPI<{ deployments: IDeploymentRow[] }>('deployments');
      this.renderDeployments(deployments);
      this.listStatus.textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      this.listStatus.textContent = `could not load deployments: ${(e as Error).message}`;
    }
  }

  private renderDeployments(rows: IDeploymentRow[]): void {
    const head = el('tr', {}, el('th', {}, 'deployment'), el('th', {}, ''));
    // Stop and Roll back sit on the version in service; with none in service, Roll back sits on the newest version.
    const live = (r: IDeploymentRow) => r.status === 'serving' || r.status === 'unhealthy';
    const liveNames = new Set(rows.filter(live).map(r => r.name));
    const seen = new Set<string>();
    const body = rows.map(r => {
      const actions = el('td', {});
      if (live(r)) {
        actions.append(this.actionButton(r.name, 'stop', 'Stop'));
      }
      if (live(r) || (!liveNames.has(r.name) && !seen.has(r.name))) {
        actions.append(this.actionButton(r.name, 'rollback', 'Roll back'));
      }
      seen.add(r.name);
      const verdict = r.verdict ?? 'none';
      const what = el(
        'td',
        {},
        el('b', {}, r.name),
        ` v${r.version} · ${r.target}`,
        el('br'),
        el('span', { class: 'nbdeploy-status' }, r.status.replace('_', ' ')),
        ' ',
        el('span', { class: `nbdeploy-verdict nbdeploy-verdict-${verdict}` }, r.verdict ?? 'unchecked')
      );
      if (r.url && r.status === 'serving') {
        what.append(el('br'), el('a', { href: r.url, target: '_blank', class: 'nbdeploy-url' }, r.url));
      }
      return el(
        'tr',
        { 'data-name': r.name, 'data-version': String(r.version), 'data-status': r.status, title: r.detail ?? '' },
        what,
        actions
      );
    });
    this.table.replaceChildren(head, ...body);
  }

  private actionButton(name: string, action: 'stop' | 'rollback', label: string): HTMLButtonElement {
    const b = el('button', { class: `jp-mod-styled nbdeploy-${action}` }, label);
    b.onclick = async () => {
      b.disabled = true;
      this.actionStatus.className = 'nbdeploy-muted';
      this.actionStatus.textContent = `${label.toLowerCase()} ${name}...`;
      try {
        const r = await requestAPI<{ message: string }>(`deployments/${encodeURIComponent(name)}/${action}`, { method: 'POST' });
        this.actionStatus.textContent = r.message;
      } catch (e) {
        this.actionStatus.className = 'nbdeploy-error';
        this.actionStatus.textContent = `${label} ${name} failed: ${(e as Error).message}`;
      }
      await this.refreshDeployments();
    };
    return b;
  }

  protected onAfterShow(msg: Message): void {
    void this.refreshModels();
    void this.refreshDeployments();
    this.startTimer();
  }

  protected onAfterHide(msg: Message): void {
    window.clearInterval(this.timer);
  }

  startTimer(): void {
    window.clearInterval(this.timer);
    this.timer = window.setInterval(() => {
      if (this.isVisible) {
        void this.refreshDeployments();
      }
    }, Math.max(1, this.defaults.refreshSeconds) * 1000);
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'nbdeploy sidebar: deploy a model from the notebook kernel, list, stop and roll back deployments.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ILabShell, ICommandPalette, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    labShell: ILabShell | null,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    const defaults: IDefaults = { target: 'local', name: '', refreshSeconds: 5 };
    const panel = new DeployPanel(tracker, defaults);
    app.shell.add(panel, 'left', { rank: 850 });
    app.commands.addCommand(COMMAND, {
      label: 'nbdeploy: Deploy a model from this notebook',
      icon: rocketIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    palette?.addItem({ command: COMMAND, category: 'nbdeploy' });
    const markTouched = (e: Event) => ((e.target as HTMLElement).dataset.touched = '1');
    panel.name.addEventListener('input', markTouched);
    panel.target.addEventListener('change', markTouched);
    if (settingRegistry) {
      void settingRegistry.load(PLUGIN_ID).then(settings => {
        const apply = () => {
          panel.defaults.target = settings.get('target').composite as string;
          panel.defaults.name = settings.get('name').composite as string;
          panel.defaults.refreshSeconds = settings.get('refreshSeconds').composite as number;
          if (panel.isVisible) {
            panel.startTimer();
          }
        };
        apply();
        settings.changed.connect(apply);
      });
    }
    console.log('nbdeploy-labextension is activated');
  }
};

export default plugin;
