/**
 * Small DOM helpers: elements, JupyterLab-styled selects and buttons, status badges.
 */
import { LabIcon, Styling } from '@jupyterlab/ui-components';

/** Children an element can be given. */
export type Child = Node | string | null | undefined | false;

/** A DOM element with attributes and children (null, undefined and false children are left out). */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    e.setAttribute(k, v);
  }
  e.append(...children.filter((c): c is Node | string => !!c));
  return e;
}

/** A select styled as JupyterLab's HTMLSelect (jp-select-wrapper, jp-mod-styled, the caret icon). */
export function select(id: string): {
  select: HTMLSelectElement;
  node: HTMLElement;
} {
  const s = el('select', { id });
  const node = el('div', { class: 'jp-HTMLSelect jp-DefaultStyle' }, s);
  Styling.styleNode(node);
  return { select: s, node };
}

/** Replace a select's options, keeping the chosen value when it is still offered. */
export function fillSelect(
  s: HTMLSelectElement,
  options: [string, string][],
  keep = true
): void {
  const old = s.value;
  s.replaceChildren(
    ...options.map(([value, label]) => el('option', { value }, label))
  );
  if (keep && options.some(([v]) => v === old)) {
    s.value = old;
  }
}

/** A labelled form row. */
export function field(label: string, input: HTMLElement, id = ''): HTMLElement {
  return el(
    'label',
    { class: 'nbdeploy-field', ...(id ? { for: id } : {}) },
    el('span', { class: 'nbdeploy-field-label' }, label),
    input
  );
}

/** A button in JupyterLab's style (ui-components' Button classes), with an optional icon. */
export function button(
  label: string,
  attrs: Record<string, string> = {},
  icon?: LabIcon,
  onClick?: (b: HTMLButtonElement) => void
): HTMLButtonElement {
  const cls = `jp-Button jp-mod-styled ${attrs.class ?? ''}`.trim();
  const b = el(
    'button',
    { type: 'button', ...attrs, class: cls },
    icon
      ? icon.element({ tag: 'span', className: 'nbdeploy-button-icon' })
      : null,
    label ? el('span', { class: 'nbdeploy-button-label' }, label) : null
  );
  if (onClick) {
    b.addEventListener('click', () => onClick(b));
  }
  return b;
}

/** The colour family of a status or verdict: ok, warn, bad, or neutral. */
export function tone(status: string | null): string {
  switch (status) {
    case 'serving':
    case 'pass':
    case 'ok':
      return 'ok';
    case 'unhealthy':
    case 'warn':
    case 'starting':
    case 'unknown':
      return 'warn';
    case 'dead':
    case 'failed':
    case 'fail':
    case 'drifted':
      return 'bad';
    default:
      return 'neutral';
  }
}

/** A small pill saying a status or verdict, coloured by its tone. */
export function badge(
  text: string,
  status: string | null,
  attrs: Record<string, string> = {}
): HTMLElement {
  const cls = `nbdeploy-badge nbdeploy-badge-${tone(status)} ${attrs.class ?? ''}`;
  return el('span', { ...attrs, class: cls.trim() }, text);
}
