"""Packaging read from settings.ini, the single source of nbdeploy's metadata (nbdev 2.4 convention)."""
import os
import shlex
import sys
from configparser import ConfigParser

import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['Planning', 'Pre-Alpha', 'Alpha', 'Beta', 'Production/Stable', 'Mature', 'Inactive']
lic = licenses[cfg['license']]
requirements = shlex.split(cfg.get('requirements', ''))
dev_requirements = shlex.split(cfg.get('dev_requirements', ''))
scripts = [s.strip() for s in cfg.get('console_scripts', '').split(',') if s.strip()]

# JupyterLab: the prebuilt sidebar (labextension/built, made by `jlpm build` in labextension/) and the config that
# enables the server extension, installed where Jupyter looks for them; users need no node.
LABEXT, LABEXT_BUILT = 'share/jupyter/labextensions/nbdeploy-labextension', 'labextension/built'
data_files = [('etc/jupyter/jupyter_server_config.d', ['jupyter-config/server-config/nbdeploy.json'])]
if os.path.isdir(LABEXT_BUILT):
    data_files.append((LABEXT, ['labextension/install.json']))
    for d, _, files in os.walk(LABEXT_BUILT):
        rel = os.path.relpath(d, LABEXT_BUILT)
        data_files.append((LABEXT if rel == '.' else f'{LABEXT}/{rel}', [os.path.join(d, f) for f in sorted(files)]))
else:
    print(f'WARNING: {LABEXT_BUILT} is missing, so the JupyterLab sidebar is not installed: '
          'run `cd labextension && jlpm install && jlpm build` first (see scripts/test.sh)', file=sys.stderr)


class Distribution(setuptools.Distribution):
    "Editable installs skip data_files: setuptools asks for `has_data`, which does not exist (pypa/setuptools#3399)."
    def has_data(self): return self.has_data_files()

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], description=cfg['description'],
    license=lic[0], author=cfg['author'], author_email=cfg['author_email'],
    keywords=cfg['keywords'].split(), url=cfg['git_url'],
    classifiers=[f"Development Status :: {int(cfg['status'])} - {statuses[int(cfg['status'])]}",
                 f'License :: {lic[1]}', 'Programming Language :: Python :: 3',
                 'Framework :: Jupyter', 'Framework :: Jupyter :: JupyterLab'],
    packages=setuptools.find_packages(include=['nbdeploy', 'nbdeploy.*']),
    include_package_data=True, install_requires=requirements,
    extras_require={'dev': dev_requirements}, python_requires='>=' + cfg['min_python'],
    long_description=open('README.md', encoding='utf-8').read(), long_description_content_type='text/markdown',
    data_files=data_files, distclass=Distribution, zip_safe=False, entry_points={'console_scripts': scripts, 'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
)
