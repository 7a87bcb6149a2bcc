/**
 * The deployments list: the ledger from the server extension, grouped by name, with only the version in
 * service expanded, only the actions the API says apply to each row, the live versions' health
 * (`Monitor.health`: rate, error rate, p99 latency, drift verdict), and, with a candidate beside the champion
 * (shadow, canary, A/B), the variants with their shares and the Promote and Roll back buttons.
 */
import {
  caretDownIcon,
  caretRightIcon,
  fastForwardIcon,
  historyIcon,
  LabIcon,
  listIcon,
  PanelWithToolbar,
  refreshIcon,
  stopIcon,
  ToolbarButton
} from '@jupyterlab/ui-components';
import { TranslationBundle } from '@jupyterlab/translation';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { badge, button, el } from './dom';
import { urlWithCopy } from './panel';
import { requestAPI } from './request';

/** An action the server extension runs on a deployment (POST /nbdeploy/deployments/NAME/ACTION). */
export type Action = 'stop' | 'rollback' | 'logs';

/** An action on a deployment's routing: the candidate a step on, or all traffic back to the champion. */
export type RouteAction = 'promote' | 'rollback';

/** The ledger statuses of a version serving beside the champion (nbdeploy.faces.CANDIDATES). */
const CANDIDATES = ['shadow', 'canary', 'ab'];

/** One version serving under a deployment's routing (nbdeploy.faces.variants). */
export interface IVariant {
  version: number;
  /** The share of requests it answers, 0..1 (a shadow answers none: it gets a copy). */
  share: number;
  role: 'champion' | 'shadow' | 'canary' | 'ab' | string;
  /** Its live status, as its own row says. */
  status: string | null;
  /** Does it get a copy of each request (a shadow)? */
  mirror?: boolean;
  url?: string | null;
}

/** A deployment's routing as the server extension gives it with each row (nbdeploy.faces.routing_of). */
export interface IRouting {
  strategy: string;
  /** Champion first. */
  variants: IVariant[];
  /** The variants on one line, as the magic and the command line print them. */
  text: string | null;
  /** What applies to the routing now: promote and rollback while a candidate is in service. */
  actions: RouteAction[];
  error?: string | null;
}

/** A version's health over the last minutes, as `nbdeploy.monitor.Monitor.health` gives it. */
export interface IHealth {
  requests: number;
  /** Requests per second. */
  rate: number | null;
  /** The share of answers that were errors (status >= 400), 0..1. */
  error_rate: number | null;
  p99_ms: number | null;
  /** The dataset drift verdict; null when there is nothing to compare (no traffic, no reference). */
  drift: 'ok' | 'drifted' | null;
  drift_share: number | null;
  /** The worst alert level. */
  alert: 'ok' | 'warn' | 'fail' | null;
  window?: string;
}

/** One ledger row from the server extension. */
export interface IDeploymentRow {
  name: string;
  version: number;
  target: string;
  status: string;
  url: string | null;
  verdict: string | null;
  detail: string | null;
  created_at?: string | null;
  updated_at?: string | null;
  error?: string | null;
  /** The actions that apply to this row, decided by the API (nbdeploy.actions); none when absent. */
  actions?: Action[];
  /** The version in service's health; null for the others, or when the monitor failed (then `health_error`). */
  health?: IHealth | null;
  health_error?: string | null;
  /** The health is still being measured (the listing did not wait for it). */
  health_pending?: boolean;
  /** The name's routing (the same on each of its rows). */
  routing?: IRouting;
  /** This version's role and share under the routing; null when it is not one of the variants. */
  role?: string | null;
  share?: number | null;
}

/** What an action answers (`logs` also carries the log's last lines). */
interface IActionAnswer {
  message: string;
  logs?: string;
}

/** How each action the sidebar can run is shown. */
function actionLooks(
  trans: TranslationBundle
): Record<Action, { label: string; icon: LabIcon }> {
  return {
    stop: { label: trans.__('Stop'), icon: stopIcon },
    rollback: { label: trans.__('Roll back'), icon: historyIcon },
    logs: { label: trans.__('Logs'), icon: listIcon }
  };
}

/** A ledger time stamp in the reader's local time. */
function when(stamp: string): string {
  const t = new Date(stamp);
  return isNaN(t.getTime()) ? stamp : t.toLocaleString();
}

/** Is this row the version in service? */
function live(r: IDeploymentRow): boolean {
  return r.status === 'serving' || r.status === 'unhealthy';
}

/** Is this row in service: the champion, or a candidate beside it? */
function inService(r: IDeploymentRow): boolean {
  return live(r) || CANDIDATES.includes(r.status);
}

/** A share as a percentage, at most one decimal: 0.95 is "95%". */
function pct(share: number): string {
  return `${num(share * 100, 1)}%`;
}

/** One variant as people read it: "v3 95%", "v4 5% canary", "v4 shadow". */
export function variantText(v: IVariant): string {
  if (v.role === 'shadow' && !v.share) {
    return `v${v.version} shadow`;
  }
  const role = v.role === 'champion' ? '' : ` ${v.role}`;
  return `v${v.version} ${pct(v.share)}${role}`;
}

/** Does the routing split or mirror traffic (a candidate beside the champion)? */
function split(routing: IRouting | undefined): routing is IRouting {
  return !!routing && routing.variants.some(v => v.role !== 'champion');
}

/** A number with at most `digits` decimals, no trailing zeros; a dash when there is none. */
function num(x: number | null | undefined, digits = 2): string {
  return x === null || x === undefined || !isFinite(x)
    ? '–'
    : String(Number(x.toFixed(digits)));
}

/** A request rate people read at a glance: per second from 1/s up, per minute below (2 significant digits). */
function rateText(rate: number | null, trans: TranslationBundle): string {
  if (rate === null || !isFinite(rate)) {
    return trans.__('– req/s');
  }
  return rate >= 1
    ? trans.__('%1 req/s', num(rate, 1))
    : trans.__('%1 req/min', String(Number((rate * 60).toPrecision(2))));
}

/** The health line of a version in service: rate, errors, p99, the drift verdict and any alert. */
export function healthLine(
  r: IDeploymentRow,
  trans: TranslationBundle
): HTMLElement | null {
  const h = r.health;
  if (!h && r.health_pending) {
    return el(
      'div',
      { class: 'nbdeploy-health nbdeploy-muted' },
      trans.__('measuring health…')
    );
  }
  if (!h) {
    return r.health_error
      ? el(
          'div',
          { class: 'nbdeploy-health nbdeploy-muted', title: r.health_error },
          trans.__('health unavailable')
        )
      : null;
  }
  const stat = (name: string, text: string) =>
    el('span', { class: 'nbdeploy-health-stat', 'data-stat': name }, text);
  const drift = h.drift ?? 'n/a';
  const stats = h.requests
    ? [
        stat('rate', rateText(h.rate, trans)),
        stat(
          'errors',
          trans.__('%1% errors', num((h.error_rate ?? 0) * 100, 1))
        ),
        stat('p99', trans.__('p99 %1 ms', num(h.p99_ms, 1)))
      ]
    : [
        stat(
          'rate',
          trans.__('no requests in %1', h.window ?? trans.__('the window'))
        )
      ];
  return el(
    'div',
    {
      class: 'nbdeploy-health',
      'data-drift': drift,
      'data-alert': h.alert ?? 'none',
      title: trans.__(
        '%1 requests; drift share %2',
        String(h.requests),
        num(h.drift_share)
      )
    },
    ...stats,
    badge(
      h.drift === 'drifted' ? trans.__('drifted') : trans.__('drift %1', drift),
      h.drift,
      { class: 'nbdeploy-drift' }
    ),
    h.alert && h.alert !== 'ok'
      ? badge(trans.__('alert: %1', h.alert), h.alert, {
          class: 'nbdeploy-alert'
        })
      : null
  );
}

/** The rows grouped by deployment name, in the order the ledger gives (newest first). */
export function groupByName(
  rows: IDeploymentRow[]
): Map<string, IDeploymentRow[]> {
  const groups = new Map<string, IDeploymentRow[]>();
  for (const r of rows) {
    groups.set(r.name, [...(groups.get(r.name) ?? []), r]);
  }
  return groups;
}

/** The deployments section of the sidebar. */
export class DeploymentList extends PanelWithToolbar {
  constructor(
    private refreshSeconds: () => number,
    private trans: TranslationBundle
  ) {
    super();
    this.id = 'nbdeploy-deployments-section';
    this.title.label = trans.__('Deployments');
    this.addClass('nbdeploy-section');
    this.toolbar.addItem(
      'refresh',
      new ToolbarButton({
        icon: refreshIcon,
        className: 'nbdeploy-refresh-list',
        tooltip: trans.__('Refresh the deployments'),
        onClick: () => void this.refresh()
      })
    );
    const body = new Widget({
      node: el('div', {}, this.actionStatus, this.list, this.listStatus)
    });
    body.addClass('nbdeploy-list-body');
    this.addWidget(body);
  }

  readonly list = el('div', {
    id: 'nbdeploy-deployments',
    class: 'nbdeploy-deployments'
  });
  readonly listStatus = el('div', {
    id: 'nbdeploy-list-status',
    class: 'nbdeploy-muted'
  });
  readonly actionStatus = el('div', { id: 'nbdeploy-action' });
  /** Rows the user opened or closed, by "name:version", kept across refreshes. */
  private expanded = new Map<string, boolean>();
  private looks = actionLooks(this.trans);
  /** The server log shown under a row, by "name:version". */
  private logs = new Map<string, string>();
  private timer = 0;

  /** Reload the ledger from the server extension. */
  async refresh(): Promise<void> {
    try {
      const { deployments } = await requestAPI<{
        deployments: IDeploymentRow[];
      }>('deployments');
      this.render(deployments);
      this.listStatus.textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      this.listStatus.textContent = `could not load deployments: ${(e as Error).message}`;
    }
  }

  private render(rows: IDeploymentRow[]): void {
    const groups = [...groupByName(rows)].map(([name, versions]) =>
      this.group(name, versions)
    );
    this.list.replaceChildren(
      ...(groups.length
        ? groups
        : [el('div', { class: 'nbdeploy-muted' }, 'no deployments yet')])
    );
  }

  /** One deployment name: a header with its state, then its versions. */
  private group(name: string, versions: IDeploymentRow[]): HTMLElement {
    const current = versions.find(live) ?? versions[0];
    const state = live(current) ? current.status : 'not serving';
    return el(
      'section',
      { class: 'nbdeploy-group', 'data-name': name },
      el(
        'div',
        { class: 'nbdeploy-group-header' },
        el('span', { class: 'nbdeploy-group-name' }, name),
        badge(state, live(current) ? current.status : null, {
          class: 'nbdeploy-group-status'
        }),
        el(
          'span',
          { class: 'nbdeploy-muted nbdeploy-group-count' },
          `${versions.length} version${versions.length === 1 ? '' : 's'}`
        )
      ),
      this.variantsLine(name, current.routing),
      ...versions.map(r => this.row(r))
    );
  }

  /** The variants with their shares, and Promote and Roll back while a candidate is in service. */
  private variantsLine(
    name: string,
    routing: IRouting | undefined
  ): HTMLElement | null {
    if (!split(routing)) {
      return null;
    }
    const parts: (HTMLElement | string)[] = [];
    for (const v of routing.variants) {
      if (parts.length) {
        parts.push(' · ');
      }
      parts.push(
        el(
          'span',
          {
            class: 'nbdeploy-variant',
            'data-version': String(v.version),
            'data-role': v.role
          },
          variantText(v)
        )
      );
    }
    // an A/B test crowns the variant people pick (nd.promote(name, version=V)); the others move the candidate on
    const ab = routing.strategy === 'ab';
    const buttons = routing.actions.flatMap(a =>
      a === 'promote' && ab
        ? routing.variants.map(v => this.routeButton(name, a, v.version))
        : [this.routeButton(name, a)]
    );
    return el(
      'div',
      {
        class: 'nbdeploy-variants',
        'data-strategy': routing.strategy,
        title: routing.text ?? ''
      },
      el('span', { class: 'nbdeploy-variant-list' }, ...parts),
      el('span', { class: 'nbdeploy-actions' }, ...buttons)
    );
  }

  /** Promote the candidate a step (or crown A/B variant `version`), or roll it back, then refresh the list. */
  private routeButton(
    name: string,
    action: RouteAction,
    version?: number
  ): HTMLButtonElement {
    const promote = action === 'promote';
    const label = !promote
      ? this.trans.__('Roll back')
      : version === undefined
        ? this.trans.__('Promote')
        : this.trans.__('Promote v%1', String(version));
    const title = !promote
      ? this.trans.__('All traffic of %1 back to the champion', name)
      : version === undefined
        ? this.trans.__('Move the candidate of %1 on a step', name)
        : this.trans.__('Make v%1 the champion of %2', String(version), name);
    const query = version === undefined ? '' : `?version=${version}`;
    return button(
      label,
      {
        class: `jp-mod-minimal jp-mod-small nbdeploy-route-${action}`,
        title,
        ...(version === undefined ? {} : { 'data-version': String(version) })
      },
      promote ? fastForwardIcon : historyIcon,
      async b => {
        b.disabled = true;
        this.actionStatus.className = 'nbdeploy-muted';
        this.actionStatus.textContent = `${label.toLowerCase()} ${name}…`;
        try {
          const path = `deployments/${encodeURIComponent(name)}/${action}${query}`;
          const answer = await requestAPI<IActionAnswer>(path, {
            method: 'POST'
          });
          this.actionStatus.textContent = answer.message;
        } catch (e) {
          this.actionStatus.className = 'nbdeploy-error';
          this.actionStatus.textContent = `${label} ${name} failed: ${(e as Error).message}`;
        }
        await this.refresh();
      }
    );
  }

  /** One version: a summary line (always) and its details (when expanded). */
  private row(r: IDeploymentRow): HTMLElement {
    const key = `${r.name}:${r.version}`;
    const open = this.expanded.get(key) ?? inService(r);
    const toggle = button(
      '',
      {
        class: 'jp-mod-minimal nbdeploy-toggle',
        title: open
          ? this.trans.__('Hide details')
          : this.trans.__('Show details'),
        'aria-expanded': String(open)
      },
      open ? caretDownIcon : caretRightIcon,
      () => {
        this.expanded.set(key, !open);
        node.replaceWith(this.row(r));
      }
    );
    const actions = (r.actions ?? [])
      .filter(a => a in this.looks)
      .map(a => this.actionButton(r, a));
    const summary = el(
      'div',
      { class: 'nbdeploy-row-summary' },
      toggle,
      el('span', { class: 'nbdeploy-version' }, `v${r.version}`),
      badge(r.status.replace('_', ' '), r.status, { class: 'nbdeploy-status' }),
      badge(r.verdict ?? 'unchecked', r.verdict, { class: 'nbdeploy-verdict' }),
      el('span', { class: 'nbdeploy-actions' }, ...actions)
    );
    const details = open
      ? el(
          'div',
          { class: 'nbdeploy-row-details' },
          el('div', { class: 'nbdeploy-muted' }, `target: ${r.target}`),
          r.url && inService(r) ? urlWithCopy(r.url, this.trans) : null,
          r.updated_at
            ? el(
                'div',
                { class: 'nbdeploy-muted' },
                `updated ${when(r.updated_at)}`
              )
            : null,
          r.error ? el('div', { class: 'nbdeploy-error' }, r.error) : null,
          r.detail ? el('pre', { class: 'nbdeploy-detail' }, r.detail) : null,
          this.logs.has(key)
            ? el(
                'pre',
                { class: 'nbdeploy-log nbdeploy-logs' },
                this.logs.get(key) || '(empty)'
              )
            : null
        )
      : null;
    const node = el(
      'div',
      {
        class: `nbdeploy-row${open ? ' nbdeploy-mod-expanded' : ''}`,
        'data-name': r.name,
        'data-version': String(r.version),
        'data-status': r.status,
        'data-expanded': String(open),
        title: r.detail ?? ''
      },
      summary,
      inService(r) ? healthLine(r, this.trans) : null,
      details
    );
    return node;
  }

  /** The button of one action on one version; logs show under the row, the others refresh the list. */
  private actionButton(r: IDeploymentRow, action: Action): HTMLButtonElement {
    const { label, icon } = this.looks[action];
    const name = r.name;
    const key = `${r.name}:${r.version}`;
    const path = `deployments/${encodeURIComponent(name)}/${action}?version=${r.version}`;
    return button(
      label,
      {
        class: `jp-mod-minimal jp-mod-small nbdeploy-${action}`,
        title: `${label} ${name} v${r.version}`
      },
      icon,
      async b => {
        b.disabled = true;
        this.actionStatus.className = 'nbdeploy-muted';
        this.actionStatus.textContent = `${label.toLowerCase()} ${name} v${r.version}…`;
        try {
          const init = action === 'logs' ? {} : { method: 'POST' };
          const answer = await requestAPI<IActionAnswer>(path, init);
          this.actionStatus.textContent = answer.message;
          if (action === 'logs') {
            this.logs.set(key, answer.logs ?? '');
            this.expanded.set(key, true);
          }
        } catch (e) {
          this.actionStatus.className = 'nbdeploy-error';
          this.actionStatus.textContent = `${label} ${name} failed: ${(e as Error).message}`;
        }
        await this.refresh();
      }
    );
  }

  protected onAfterShow(msg: Message): void {
    void this.refresh();
    this.startTimer();
  }

  protected onAfterHide(msg: Message): void {
    window.clearInterval(this.timer);
  }

  /** Refresh the list every `refreshSeconds` while it is visible. */
  startTimer(): void {
    window.clearInterval(this.timer);
    this.timer = window.setInterval(
      () => {
        if (this.isVisible) {
          void this.refresh();
        }
      },
      Math.max(1, this.refreshSeconds()) * 1000
    );
  }

  dispose(): void {
    window.clearInterval(this.timer);
    super.dispose();
  }
}
