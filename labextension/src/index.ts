/**
 * nbdeploy's JupyterLab sidebar: deploy a model that lives in the active notebook's kernel, and list, stop and
 * roll back deployments. It holds no deploy logic: it runs nbdeploy's public API in the kernel (kernel.ts) and
 * calls the server extension (request.ts).
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';
import { LabIcon, SidePanel } from '@jupyterlab/ui-components';
import { AccordionPanel } from '@lumino/widgets';

// The sidebar is added to the shell as the plugin activates, so its widgets are needed at once.
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { DeploymentList } from './deployments';
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { DeployForm, IDefaults } from './panel';

const PLUGIN_ID = 'nbdeploy-labextension:plugin';
const COMMAND = 'nbdeploy:open';

const rocketIcon = new LabIcon({
  name: 'nbdeploy:rocket',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16"><path class="jp-icon3" ' +
    'fill="#616161" d="M12 2c3 2 5 6 5 10l2 3v3l-3-1-1 2H9l-1-2-3 1v-3l2-3c0-4 2-8 5-10zm0 6a2 2 0 100 4 ' +
    '2 2 0 000-4z"/></svg>'
});

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'nbdeploy sidebar: deploy a model from the notebook kernel, list, stop and roll back deployments.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ILabShell, ICommandPalette, ISettingRegistry, ITranslator],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    labShell: ILabShell | null,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    translator: ITranslator | null
  ) => {
    const trans = (translator ?? nullTranslator).load('nbdeploy');
    const defaults: IDefaults = {
      target: 'local',
      name: '',
      refreshSeconds: 5
    };
    const list = new DeploymentList(() => defaults.refreshSeconds, trans);
    const form = new DeployForm({
      tracker,
      defaults,
      icon: rocketIcon,
      trans,
      deployed: () => void list.refresh(),
      openTab: (widget: MainAreaWidget) => {
        const open = Array.from(app.shell.widgets('main')).find(
          w => w.id === widget.id
        );
        open?.dispose();
        app.shell.add(widget, 'main');
        app.shell.activateById(widget.id);
      }
    });
    const panel = new SidePanel();
    panel.id = 'nbdeploy-sidebar';
    panel.addClass('nbdeploy-panel');
    panel.title.icon = rocketIcon;
    panel.title.caption = trans.__('nbdeploy: deploy a model');
    panel.addWidget(form);
    panel.addWidget(list);
    (panel.content as AccordionPanel).setRelativeSizes([3, 2]);
    app.shell.add(panel, 'left', { rank: 850 });

    app.commands.addCommand(COMMAND, {
      label: trans.__('nbdeploy: Deploy a model from this notebook'),
      caption: trans.__('Open the nbdeploy sidebar'),
      describedBy: { args: { type: 'object', properties: {} } },
      icon: rocketIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    palette?.addItem({ command: COMMAND, category: trans.__('nbdeploy') });

    if (settingRegistry) {
      void settingRegistry.load(PLUGIN_ID).then(settings => {
        const apply = () => {
          defaults.target = settings.get('target').composite as string;
          defaults.name = settings.get('name').composite as string;
          defaults.refreshSeconds = settings.get('refreshSeconds')
            .composite as number;
          if (list.isVisible) {
            list.startTimer();
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
