/**
 * The deploy form: pick a model and its test data from the notebook's kernel, deploy it, follow its steps on a
 * progress bar, and see the verdict and the URL; the readiness report opens in a main-area tab.
 */
import { Clipboard, MainAreaWidget } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { ISessionContext } from '@jupyterlab/apputils';
import {
  copyIcon,
  LabIcon,
  launchIcon,
  PanelWithToolbar,
  refreshIcon,
  ToolbarButton
} from '@jupyterlab/ui-components';
import { TranslationBundle } from '@jupyterlab/translation';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { badge, button, el, field, fillSelect, select } from './dom';
import {
  deploy,
  DeployResult,
  IDataInfo,
  IDeployed,
  IInventory,
  isIdle,
  IStepEvent,
  isUserCode,
  kernelModels,
  panelReport,
  resultMark
} from './kernel';

/** The sidebar's defaults (the plugin's settings). */
export interface IDefaults {
  target: string;
  name: string;
  refreshSeconds: number;
}

/** What the form needs from the plugin. */
export interface IDeployFormOptions {
  tracker: INotebookTracker;
  defaults: IDefaults;
  icon: LabIcon;
  /** Called after each deploy, to refresh the deployments list. */
  deployed: () => void;
  /** The sidebar's translations. */
  trans: TranslationBundle;
  /** Open a widget in the main area. */
  openTab: (widget: MainAreaWidget) => void;
}

/** A URL as a link that opens in a new tab, with a button that copies it. */
export function urlWithCopy(
  url: string,
  trans: TranslationBundle,
  id = ''
): HTMLElement {
  const link = el(
    'a',
    {
      href: url,
      target: '_blank',
      rel: 'noopener noreferrer',
      class: 'nbdeploy-url',
      ...(id ? { id } : {})
    },
    url
  );
  const copy = button(
    '',
    {
      class: 'jp-mod-minimal nbdeploy-copy',
      title: trans.__('Copy the URL'),
      'aria-label': trans.__('Copy the URL'),
      ...(id ? { id: `${id}-copy` } : {})
    },
    copyIcon,
    b => {
      Clipboard.copyToSystem(url);
      b.classList.add('nbdeploy-copied');
      b.title = trans.__('Copied');
      window.setTimeout(() => {
        b.classList.remove('nbdeploy-copied');
        b.title = trans.__('Copy the URL');
      }, 1500);
    }
  );
  return el('span', { class: 'nbdeploy-url-box' }, link, copy);
}

/** A main-area tab showing a readiness report's HTML in a sandboxed frame (no scripts, no same origin). */
export function reportWidget(
  html: string,
  title: string,
  icon: LabIcon
): MainAreaWidget {
  const content = new Widget();
  content.addClass('nbdeploy-report');
  const frame = el('iframe', {
    sandbox: '',
    class: 'nbdeploy-report-frame',
    title
  });
  frame.srcdoc = `<!doctype html><meta charset="utf-8"><title>${title.replace(/</g, '&lt;')}</title>${html}`;
  content.node.appendChild(frame);
  const widget = new MainAreaWidget({ content });
  widget.id = `nbdeploy-report-${title.replace(/[^A-Za-z0-9_-]/g, '-')}`;
  widget.title.label = title;
  widget.title.icon = icon;
  widget.title.closable = true;
  return widget;
}

/** The deploy form, a section of the sidebar. */
export class DeployForm extends PanelWithToolbar {
  constructor(private options: IDeployFormOptions) {
    super();
    this.id = 'nbdeploy-deploy-section';
    this.title.label = options.trans.__('Deploy a model');
    this.addClass('nbdeploy-section');
    this.toolbar.addItem(
      'refresh',
      new ToolbarButton({
        icon: refreshIcon,
        className: 'nbdeploy-refresh-models',
        tooltip: options.trans.__("Refresh the kernel's models and data"),
        onClick: () => void this.refreshModels()
      })
    );
    const body = new Widget({ node: this.build() });
    body.addClass('nbdeploy-form');
    this.addWidget(body);
    options.tracker.currentChanged.connect(() => this.watchKernel());
    this.watchKernel();
  }

  readonly notebookLabel = el(
    'div',
    { class: 'nbdeploy-muted', id: 'nbdeploy-notebook' },
    'no notebook open'
  );
  readonly model = select('nbdeploy-model');
  readonly xTest = select('nbdeploy-xtest');
  readonly yTest = select('nbdeploy-ytest');
  readonly sensitive = select('nbdeploy-sensitive');
  readonly target = select('nbdeploy-target');
  readonly name = el('input', {
    id: 'nbdeploy-name',
    type: 'text',
    class: 'jp-mod-styled',
    placeholder: this.options.trans.__('deployment name')
  });
  readonly strategy = select('nbdeploy-strategy');
  readonly traffic = el('input', {
    id: 'nbdeploy-traffic',
    type: 'text',
    class: 'jp-mod-styled',
    placeholder: this.options.trans.__('0.05, or v1=0.5,new=0.5')
  });
  readonly force = el('input', { id: 'nbdeploy-force', type: 'checkbox' });
  readonly deployButton = button(
    this.options.trans.__('Deploy'),
    { id: 'nbdeploy-deploy', class: 'jp-mod-accept' },
    this.options.icon,
    () => void this.deploy()
  );
  readonly progressBar = el('progress', {
    id: 'nbdeploy-progress-bar',
    max: '1',
    value: '0'
  });
  readonly stepLabel = el('span', { id: 'nbdeploy-step' });
  readonly progress = el(
    'div',
    {
      id: 'nbdeploy-progress',
      class: 'nbdeploy-progress',
      'data-state': 'idle'
    },
    this.progressBar,
    this.stepLabel
  );
  readonly log = el('pre', { id: 'nbdeploy-log', class: 'nbdeploy-log' });
  readonly logBox = el(
    'details',
    { class: 'nbdeploy-log-box', id: 'nbdeploy-log-box' },
    el('summary', {}, 'Log'),
    this.log
  );
  readonly result = el('div', { id: 'nbdeploy-result' });
  private inventory: IInventory = { models: [], data: [], targets: [] };
  private mark: string | null = null;
  private userRan = false;
  private watched: ISessionContext | null = null;

  private build(): HTMLElement {
    const trans = this.options.trans;
    this.xTest.select.addEventListener('change', () => this.fillSensitive());
    this.model.select.addEventListener('change', () => this.proposeName());
    this.name.addEventListener(
      'input',
      () => (this.name.dataset.touched = '1')
    );
    this.target.select.addEventListener(
      'change',
      () => (this.target.select.dataset.touched = '1')
    );
    return el(
      'div',
      {},
      this.notebookLabel,
      field(trans.__('Model'), this.model.node),
      field(trans.__('Test X'), this.xTest.node),
      field(trans.__('Test y'), this.yTest.node),
      field(trans.__('Sensitive'), this.sensitive.node),
      field(trans.__('Name'), this.name),
      field(trans.__('Target'), this.target.node),
      field(trans.__('Strategy'), this.strategy.node),
      field(trans.__('Traffic'), this.traffic),
      el(
        'label',
        { class: 'nbdeploy-check' },
        this.force,
        trans.__('deploy even if the readiness check fails')
      ),
      el('div', { class: 'nbdeploy-buttons' }, this.deployButton),
      this.progress,
      this.result,
      this.logBox
    );
  }

  /** The kernel of the notebook the user is working in. */
  private get kernel(): Kernel.IKernelConnection | null {
    return (
      this.options.tracker.currentWidget?.sessionContext.session?.kernel ?? null
    );
  }

  /** Follow the current notebook: refresh the models when it changes and after the user runs a cell. */
  private watchKernel(): void {
    const current = this.options.tracker.currentWidget;
    const ctx = current?.sessionContext ?? null;
    this.watched?.iopubMessage.disconnect(this.onIOPub, this);
    this.watched = ctx;
    if (ctx) {
      ctx.iopubMessage.connect(this.onIOPub, this);
      void ctx.ready.then(() => this.refreshModels());
    }
    const trans = this.options.trans;
    this.notebookLabel.textContent = current
      ? trans.__('Notebook: %1', current.context.path)
      : trans.__('no notebook open');
  }

  private onIOPub(_: ISessionContext, msg: KernelMessage.IMessage): void {
    if (isUserCode(msg)) {
      this.userRan = true;
    } else if (isIdle(msg) && this.userRan) {
      this.userRan = false;
      if (this.isVisible) {
        void this.refreshModels();
      }
    }
  }

  /** Ask the kernel which models and data it holds, and which result marker its nbdeploy prints. */
  async refreshModels(): Promise<void> {
    const kernel = this.kernel;
    if (!kernel) {
      this.setInventory({ models: [], data: [], targets: [] });
      return;
    }
    try {
      const inv = await kernelModels(kernel);
      this.mark = await resultMark(kernel, inv);
      this.setInventory(inv);
    } catch (e) {
      this.showError(
        `could not list the kernel's models: ${(e as Error).message}`
      );
    }
  }

  private setInventory(inv: IInventory): void {
    this.inventory = inv;
    const none: [string, string] = ['', '(none)'];
    const models = inv.models.map(
      m =>
        [m.name, `${m.name} (${m.type}${m.fitted ? '' : ', not fitted'})`] as [
          string,
          string
        ]
    );
    fillSelect(
      this.model.select,
      models.length ? models : [['', '(no model with predict in this kernel)']]
    );
    const describe = (d: IDataInfo) =>
      [d.name, `${d.name} (${d.type} ${d.shape.join('×')})`] as [
        string,
        string
      ];
    fillSelect(this.xTest.select, [
      none,
      ...inv.data.filter(d => d.ndim === 2).map(describe)
    ]);
    fillSelect(this.yTest.select, [
      none,
      ...inv.data.filter(d => d.ndim === 1).map(describe)
    ]);
    const d = this.options.defaults;
    const strategies = inv.strategies?.length ? inv.strategies : ['blue-green'];
    fillSelect(
      this.strategy.select,
      strategies.map(t => [t, t] as [string, string])
    );
    const targets = inv.targets.length ? inv.targets : [d.target];
    fillSelect(
      this.target.select,
      targets.map(t => [t, t] as [string, string])
    );
    if (!this.target.select.dataset.touched && targets.includes(d.target)) {
      this.target.select.value = d.target;
    }
    this.fillSensitive();
    this.proposeName();
  }

  private fillSensitive(): void {
    const x = this.inventory.data.find(d => d.name === this.xTest.select.value);
    fillSelect(this.sensitive.select, [
      ['', '(none)'],
      ...(x?.columns ?? []).map(c => [c, c] as [string, string])
    ]);
  }

  private proposeName(): void {
    if (!this.name.dataset.touched) {
      this.name.value =
        this.options.defaults.name ||
        this.model.select.value.replace(/_/g, '-');
    }
  }

  /** Check and deploy in the kernel, following its steps on the progress bar. */
  async deploy(): Promise<void> {
    const kernel = this.kernel;
    if (!kernel || !this.model.select.value) {
      this.showError(
        'open a notebook whose kernel holds a fitted model, then pick it'
      );
      return;
    }
    if (!this.mark) {
      await this.refreshModels();
    }
    const mark = this.mark;
    if (!mark) {
      this.showError(
        `the kernel's nbdeploy ${this.inventory.nbdeploy ?? ''} does not say how it marks its results ` +
          '(no "protocol" in kernel_models()): install the same nbdeploy in the kernel as in JupyterLab'
      );
      return;
    }
    const model = this.model.select.value;
    const spec = {
      model,
      name: this.name.value || model,
      target: this.target.select.value || this.options.defaults.target,
      X_test: this.xTest.select.value || null,
      y_test: this.yTest.select.value || null,
      sensitive: this.sensitive.select.value || null,
      force: this.force.checked,
      strategy: this.strategy.select.value || null,
      traffic: this.traffic.value.trim() || null
    };
    this.deployButton.disabled = true;
    this.log.textContent = '';
    this.setProgress(
      'running',
      0,
      1,
      `deploying ${spec.model} as ${spec.name}…`
    );
    this.result.replaceChildren();
    let result: DeployResult;
    try {
      result = await deploy(
        kernel,
        spec,
        mark,
        {
          step: e => this.onStep(e),
          log: line => {
            this.log.textContent += line + '\n';
            this.log.scrollTop = this.log.scrollHeight;
          }
        },
        !this.inventory.protocol
      );
    } finally {
      this.deployButton.disabled = false;
    }
    if (result.ok) {
      this.setProgress('done', 1, 1, 'done');
      this.showDeployed(result);
    } else {
      this.setProgress(
        'failed',
        this.progressBar.value,
        this.progressBar.max,
        `failed at ${this.progress.dataset.step ?? 'the start'}`
      );
      this.showError(result.error + (result.trace ? `\n${result.trace}` : ''));
      this.logBox.open = true;
    }
    this.options.deployed();
    this.result.scrollIntoView({ block: 'nearest' });
  }

  private onStep(e: IStepEvent): void {
    this.progress.dataset.step = e.label;
    this.setProgress(
      'running',
      e.i,
      Math.max(e.n, e.i + 1),
      `${e.label} (${e.i + 1}/${e.n})`
    );
  }

  private setProgress(
    state: string,
    value: number,
    max: number,
    label: string
  ): void {
    this.progress.dataset.state = state;
    this.progressBar.max = max;
    this.progressBar.value = value;
    this.stepLabel.textContent = label;
  }

  private showDeployed(o: IDeployed): void {
    const v = o.verdict ?? 'none';
    const reasons = el(
      'ul',
      { class: 'nbdeploy-reasons' },
      ...(o.reasons ?? []).map(r => el('li', {}, r))
    );
    const report = o.report
      ? button(
          this.options.trans.__('Readiness report'),
          { id: 'nbdeploy-report', class: 'jp-mod-minimal' },
          launchIcon,
          () => void this.openReport(o.name, o.version)
        )
      : null;
    this.result.replaceChildren(
      el(
        'div',
        { class: 'nbdeploy-verdict-line' },
        'Readiness: ',
        badge(v.toUpperCase(), v, { id: 'nbdeploy-verdict' }),
        report
      ),
      reasons,
      el(
        'div',
        { class: 'nbdeploy-served' },
        `${o.name} v${o.version} serving at `,
        o.url
          ? urlWithCopy(o.url, this.options.trans, 'nbdeploy-url')
          : '(no URL)'
      )
    );
  }

  /** Fetch deployment `name` v`version`'s readiness report from the kernel and show it in a tab. */
  async openReport(name: string, version: number): Promise<void> {
    const kernel = this.kernel;
    if (!kernel) {
      this.showError('the notebook that made the report has no kernel now');
      return;
    }
    try {
      const r = await panelReport(kernel, name, version);
      if (!r.ok) {
        throw new Error(r.error);
      }
      this.options.openTab(reportWidget(r.html, r.title, this.options.icon));
    } catch (e) {
      this.showError(`could not open the report: ${(e as Error).message}`);
    }
  }

  private showError(message: string): void {
    this.result.replaceChildren(
      el('div', { class: 'nbdeploy-error', id: 'nbdeploy-error' }, message)
    );
  }

  protected onAfterShow(msg: Message): void {
    void this.refreshModels();
  }
}
